//! The proxy: listeners and the stages a request passes through, in order.
//!
//! - [`server`]: start and stop; the accept loop, one task per connection.
//! - [`workers`]: the threads connections are served on, one per core.
//! - [`listener`]: the listener seam; where connections come from.
//! - [`transparent`]: the listener for redirected connections, and where
//!   each was going.
//! - [`limits`]: admission: connection limits, global and per client.
//! - [`connection`]: one client connection: first head, then tunnel or hyper.
//! - [`authenticate`]: who is asking (`[auth]`), on the explicit listener.
//! - [`redirected`]: a redirected connection, served as a CONNECT to where
//!   it was going.
//! - [`sniff`]: TLS or plain HTTP, from a redirected connection's first bytes.
//! - [`head`]: reading the first request head ourselves.
//! - [`frontdoor`]: hyper's own refusals replaced with `modgate:` lines.
//! - [`gate`]: the checks every door makes: Host, target form, the tunnel's host, methods.
//! - [`classify`]: the request form: tunnel, forward, or module endpoint.
//! - [`route`]: the policy's plan, with DNS when a `dst` rule needs it.
//! - [`tunnel`]: CONNECT: relay or intercept.
//! - [`relay`]: the byte relay (half-close, idle timeout, splice).
//! - [`watch`]: the verdict on a relayed tunnel's chain (passive tap, active probe).
//! - [`intercept`]: TLS termination with the local CA.
//! - [`inside`]: one request inside an intercepted tunnel.
//! - [`endpoint`]: modgate's own GOPROXY endpoint.
//! - [`answer`]: a module request answered through the cache, the mirror list or the sumdb.
//! - [`versions`]: version rules applied to lists, `@latest` and queries' answers.
//! - [`forward`]: forwarding to the origin over pooled connections.
//! - [`upload`]: a request body on its way upstream: counted, its end noted, its failures the client's.
//! - [`prefetch`]: a small forwarded body that has arrived goes out with its head.
//! - [`respond`]: the response and its access event.
//! - [`drain`]: serving a hyper connection until it ends (shutdown, idle).
//! - [`idle`]: the idle-timeout clock.
//! - [`context`]: what every connection shares.
//! - [`live`]: the context in effect, swapped whole by a reload.
//! - [`reload`]: loading the config again while serving.
//! - [`reload_watch`]: what triggers a reload: SIGHUP and file changes.
//! - [`warm`]: the endpoint's path without a listener, for `cache warm`.

pub mod answer;
pub mod authenticate;
pub mod classify;
pub mod connection;
pub mod context;
pub mod drain;
pub mod endpoint;
pub mod forward;
pub mod frontdoor;
pub mod gate;
pub mod head;
pub mod idle;
pub mod inside;
pub mod intercept;
pub mod limits;
pub mod listener;
pub mod live;
pub mod prefetch;
pub mod redirected;
pub mod relay;
pub mod reload;
pub mod reload_watch;
pub mod respond;
pub mod route;
pub mod server;
pub mod sniff;
pub mod transparent;
pub mod tunnel;
pub mod upload;
pub mod versions;
pub mod warm;
pub mod watch;
pub mod workers;
