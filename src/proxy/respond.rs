//! Turning a stage's result into the response sent, with its access event:
//! emitted at once for a refusal, or when the body ends for an answer.

use http::Response;
use http_body_util::BodyExt;

use crate::core::body::{Body, declared_length, error_response};
use crate::core::error::Error;
use crate::telemetry::access::{Access, AnswerSource, Metered};
use crate::upstream::pool::UpstreamInfo;

/// The response to send, with the access event emitted when its body ends.
pub fn respond(result: Result<Response<Body>, Error>, mut access: Box<Access>) -> Response<Body> {
    match result {
        Ok(resp) => {
            access.status = resp.status().as_u16();
            let length = declared_length(resp.headers());
            resp.map(|body| Metered::logged_with_length(body, access, length).boxed_unsync())
        }
        Err(err) => {
            access.fail(&err);
            access.emit();
            error_response(&err)
        }
    }
}

/// Records where a pooled response came from, and the verdict on the
/// upstream's chain, in the access record.
pub fn note_upstream(access: &mut Access, extensions: &http::Extensions) {
    if let Some(info) = extensions.get::<UpstreamInfo>() {
        if access.upstream.is_none() {
            access.upstream = Some(AnswerSource::Addr(info.addr));
        }
        if let Some(judgement) = &info.judgement {
            access.judgement = Some(judgement.clone());
        }
        if info.parent.is_some() {
            access.parent = info.parent.clone();
        }
    }
}
