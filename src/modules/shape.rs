//! Checking a `.info`, `@latest` or `.mod` answer before it is served or
//! cached.
//!
//! `go` reads a `.info` or `@latest` as JSON (`{"Version": "...", "Time":
//! "..."}`) and refuses one that does not parse, or whose `Version` is not
//! the canonical version it asked for. It refuses a `.mod` with no module
//! statement ("parsing go.mod: missing module line"), which is what a login
//! page or an error page served with a 200 looks like. The cache keeps
//! these files of a canonical version forever, and the checksum database
//! vouches for a `.mod` only where `[sumdb] verify` is on and the module is
//! not `nosumdb`, so a mirror's one bad answer would otherwise break that
//! version until someone removed it by hand.
//!
//! A `.info` is small, so the whole answer is read and checked. A `.mod` is
//! read only as far as its module statement, which comes first but for
//! comments; the rest streams. A bad answer is that mirror's failure: a 502
//! naming it, and `|` moves on to the next mirror. It is never cached, and it
//! does not count against the mirror's health (the mirror is up; this one
//! answer is wrong). Only what `go` itself refuses is refused: a `.mod`'s
//! module path is not compared with the module asked for, since `go`
//! accepts a fork's go.mod that still names the original under `replace`.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{Response, StatusCode, header};
use http_body::{Body as _, Frame};
use http_body_util::{BodyExt, BodyStream, StreamBody};

use crate::core::body::{Body, full};
use crate::core::duration::fmt_duration;
use crate::core::error::Error;
use crate::core::timer;
use crate::gomod::request::{MAX_INFO_BYTES, ModuleRequest};
use crate::gomod::semver::is_canonical;
use crate::gomod::sumdb::dirhash::h1_of_mod;
use crate::modules::verify::{ContentCheck, Subject, Verdict, Vetted};

/// How far into a `.mod` its module statement is looked for; past this,
/// the rest streams unjudged.
const MOD_LOOK_BYTES: usize = 256 * 1024;

/// How much more of a `.mod` or `.zip` is read before it is answered, for
/// at most [`READ_AHEAD_FOR`]: a small file from a mirror that is not slow
/// arrives whole first, so a mirror that fails partway through it is a
/// failure `|` moves on from, not a client's broken download; a slow one
/// is not held up for long.
const READ_AHEAD: usize = 64 * 1024;
/// The longest [`READ_AHEAD`] waits.
const READ_AHEAD_FOR: Duration = Duration::from_millis(100);

/// `resp`, a source's 200 answer to `request`, checked when `request` is a
/// `.info`, `@latest`, `.mod` or `.zip` (its start); other answers pass
/// untouched. A mirror's
/// gzip arrives here decoded ([`decode`](crate::modules::decode)). `source`
/// names the answer's source in errors; `gap` bounds each wait for more of
/// the part of the body that is checked (a mirror that trickles is not cut
/// while bytes keep coming; one that stalls is).
pub async fn checked(
    request: &ModuleRequest,
    resp: Response<Body>,
    source: &str,
    gap: Duration,
    content: Option<&ContentCheck>,
) -> Result<Response<Body>, Error> {
    if resp.status() != StatusCode::OK {
        return Ok(resp);
    }
    let result = match request {
        ModuleRequest::Info { version, .. } => info(resp, is_canonical(version).then_some(version.as_str()), gap).await,
        ModuleRequest::Latest { .. } => info(resp, None, gap).await,
        ModuleRequest::List { .. } => list(resp, gap).await,
        ModuleRequest::Mod { .. } => go_mod(resp, gap, request, content).await,
        ModuleRequest::Zip { module, version } => zip_start(resp, gap, module, version, request, content).await,
        _ => return Ok(resp),
    };
    result.map_err(|refused| match refused {
        // A body that broke or stalled is the mirror failing, which its
        // health counts; anything else is this one answer being wrong.
        Refused::Transport(reason) => Error::Upstream {
            target: source.to_owned(),
            reason: format!("{}: {reason}", what(request)),
        },
        Refused::Answer(reason) => Error::BadAnswer {
            target: source.to_owned(),
            reason: format!("{}: {reason}", what(request)),
        },
    })
}

/// Why an answer was refused before it was served.
#[derive(Debug)]
enum Refused {
    /// Its content is not what go takes.
    Answer(String),
    /// Its body broke or stalled while it was read.
    Transport(String),
}

impl Refused {
    /// The same refusal, `context` first.
    fn after(self, context: &str) -> Refused {
        match self {
            Refused::Answer(why) => Refused::Answer(format!("{context}{why}")),
            Refused::Transport(why) => Refused::Transport(format!("{context}{why}")),
        }
    }
}

impl From<String> for Refused {
    fn from(why: String) -> Refused {
        Refused::Answer(why)
    }
}

impl From<&str> for Refused {
    fn from(why: &str) -> Refused {
        Refused::Answer(why.to_owned())
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Answer(why) | Refused::Transport(why) => f.write_str(why),
        }
    }
}

/// A `.info` or `@latest` answer, read whole and checked ([`check_info`]).
async fn info(resp: Response<Body>, wanted: Option<&str>, gap: Duration) -> Result<Response<Body>, Refused> {
    let (mut parts, body) = resp.into_parts();
    let bytes = read_small(body, gap).await?;
    check_info(&bytes, wanted)?;
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts.headers.insert(header::CONTENT_LENGTH, bytes.len().into());
    Ok(Response::from_parts(parts, full(bytes)))
}

/// An `@v/list` answer, read whole before it is answered when it is at
/// most [`LIST_HOLD`] bytes (nearly every list is a few KiB), each wait for
/// more bounded by `gap`: a mirror that cuts or stalls it is that mirror's
/// failure (the next one after `|`, or a stale copy), not a client's
/// truncated list. A longer list streams on from there.
async fn list(resp: Response<Body>, gap: Duration) -> Result<Response<Body>, Refused> {
    let (parts, mut body) = resp.into_parts();
    let mut head = BytesMut::new();
    while head.len() < LIST_HOLD && read_more(&mut body, &mut head, gap).await? {}
    if head.len() >= LIST_HOLD && !body.is_end_stream() {
        return Ok(rejoined(parts, head.freeze(), body));
    }
    Ok(whole(parts, head.freeze()))
}

/// The most of an `@v/list` held back until it is whole.
const LIST_HOLD: usize = 256 * 1024;

/// A `.mod` answer, read as far as its module statement, then the same
/// answer: what was read, and the rest of the body as it comes.
async fn go_mod(
    resp: Response<Body>,
    gap: Duration,
    request: &ModuleRequest,
    content: Option<&ContentCheck>,
) -> Result<Response<Body>, Refused> {
    let (mut parts, mut body) = resp.into_parts();
    let mut head = BytesMut::new();
    let has_module = read_to_module_line(&mut body, &mut head, gap)
        .await
        .map_err(|why| why.after("its module line did not arrive: "))?;
    if !has_module {
        return Err("it has no module line, so go would refuse it (\"missing module line\")".into());
    }
    if read_ahead(&mut body, &mut head).await? {
        vet(request, content, &h1_of_mod(&head), head.len(), &mut parts).await?;
        return Ok(whole(parts, head.freeze()));
    }
    Ok(rejoined(parts, head.freeze(), body))
}

/// A `.zip` answer, its first bytes checked, then the same answer. A zip
/// starts with a local file header (`PK\x03\x04`), or, with no files, the
/// end of its directory (`PK\x05\x06`): anything else (an error page
/// served with a 200) is refused before a byte is sent, so `|` can move on.
/// Only the bytes that came first are compared, never waited for beyond
/// them, so a mirror that trickles is not held up here. A zip that arrived
/// whole in the read-ahead is checked as go checks a module zip (names,
/// duplicates, sizes), so a broken small zip is that mirror's failure too;
/// a bigger one is checked as it is cached.
async fn zip_start(
    resp: Response<Body>,
    gap: Duration,
    module: &str,
    version: &str,
    request: &ModuleRequest,
    content: Option<&ContentCheck>,
) -> Result<Response<Body>, Refused> {
    let (mut parts, mut body) = resp.into_parts();
    let mut head = BytesMut::new();
    while head.is_empty() && read_more(&mut body, &mut head, gap).await? {}
    let start = &head[..head.len().min(4)];
    if !(b"PK\x03\x04".starts_with(start) || b"PK\x05\x06".starts_with(start)) || start.is_empty() {
        let start = &head[..head.len().min(24)];
        return Err(Refused::Answer(format!(
            "it is not a zip (it starts with \"{}\"), so go would refuse it",
            crate::core::escape::escape(&String::from_utf8_lossy(start))
        )));
    }
    let arrived_whole = read_ahead(&mut body, &mut head).await?;
    let head = head.freeze();
    if arrived_whole {
        // Off the runtime: 64 KiB of deflate can hold tens of MiB.
        let (zip, module, version) = (head.clone(), module.to_owned(), version.to_owned());
        let h1 = tokio::task::spawn_blocking(move || {
            crate::gomod::sumdb::dirhash::h1_of_zip(std::io::Cursor::new(&zip[..]), &module, &version)
        })
        .await
        .map_err(|e| format!("checking it failed: {e}"))?
        .map_err(|e| format!("it is not a module zip go would accept: {e}"))?;
        vet(request, content, &h1, head.len(), &mut parts).await?;
        return Ok(whole(parts, head));
    }
    Ok(rejoined(parts, head, body))
}

/// An answer read whole: its length known (a decoded answer had none),
/// so the cache knows what room it takes.
fn whole(mut parts: http::response::Parts, body: Bytes) -> Response<Body> {
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts.headers.insert(header::CONTENT_LENGTH, body.len().into());
    Response::from_parts(parts, full(body))
}

/// Judges a module file that arrived whole, hashing to `h1`, against the
/// checksum database before a byte of it is sent ([`ContentCheck::vet`]),
/// so a mirror's tampered small file is its failure (a 502 naming it, or
/// the next mirror after `|`), never a client's cut download. The
/// judgment rides on the answer ([`Vetted`]) for the cache.
async fn vet(
    request: &ModuleRequest,
    content: Option<&ContentCheck>,
    h1: &str,
    len: usize,
    parts: &mut http::response::Parts,
) -> Result<(), Refused> {
    let (Some(content), Some(subject)) = (content, Subject::of(request)) else {
        return Ok(());
    };
    if let Some(verdict) = content.vet(&subject, h1).await? {
        parts.extensions.insert(Vetted {
            len: len as u64,
            unverifiable: match verdict {
                Verdict::Verified => None,
                Verdict::Unverifiable(why) => Some(why),
            },
        });
    }
    Ok(())
}

/// Appends `body`'s next frame to `head`: false once the body has ended.
async fn read_more(body: &mut Body, head: &mut BytesMut, gap: Duration) -> Result<bool, Refused> {
    match next_frame(body, gap, head.len()).await? {
        None => Ok(false),
        Some(frame) => {
            if let Ok(data) = frame.into_data() {
                head.extend_from_slice(&data);
            }
            Ok(true)
        }
    }
}

/// Reads on into `head`, up to [`READ_AHEAD`] bytes, the body's end or
/// [`READ_AHEAD_FOR`]: an error within it is the answer's. True when the
/// whole body is in `head`.
async fn read_ahead(body: &mut Body, head: &mut BytesMut) -> Result<bool, Refused> {
    let until = tokio::time::Instant::now() + READ_AHEAD_FOR;
    while head.len() < READ_AHEAD && !body.is_end_stream() {
        match timer::timeout_at(until, body.frame()).await {
            Err(_) => return Ok(false),
            Ok(None) => return Ok(true),
            Ok(Some(Err(e))) => {
                return Err(Refused::Transport(format!(
                    "its body failed after {} bytes: {}",
                    head.len(),
                    crate::upstream::pool::failure(e.as_ref())
                )));
            }
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    head.extend_from_slice(&data);
                }
            }
        }
    }
    Ok(body.is_end_stream())
}

/// `body`'s next frame (`None` at its end), waited for at most `gap`;
/// `so_far` bytes came before it, for the error.
async fn next_frame(body: &mut Body, gap: Duration, so_far: usize) -> Result<Option<Frame<Bytes>>, Refused> {
    match timer::timeout(gap, body.frame()).await {
        Err(_) => Err(Refused::Transport(format!(
            "no byte came for {} after {so_far} bytes",
            fmt_duration(gap)
        ))),
        Ok(None) => Ok(None),
        Ok(Some(Err(e))) => Err(Refused::Transport(format!(
            "its body failed after {so_far} bytes: {}",
            crate::upstream::pool::failure(e.as_ref())
        ))),
        Ok(Some(Ok(frame))) => Ok(Some(frame)),
    }
}

/// The answer again: `head`, read already, then the rest of `body` as it
/// comes.
fn rejoined(parts: http::response::Parts, head: Bytes, body: Body) -> Response<Body> {
    let head = futures_util::stream::once(std::future::ready(Ok(Frame::data(head))));
    let body = StreamBody::new(head.chain(BodyStream::new(body)));
    Response::from_parts(parts, body.boxed_unsync())
}

/// Reads `body` into `head` until a line of it is a module statement, or
/// [`MOD_LOOK_BYTES`] were read: false only when the whole body arrived
/// and no line of it is one.
async fn read_to_module_line(body: &mut Body, head: &mut BytesMut, gap: Duration) -> Result<bool, Refused> {
    let mut line_start = 0;
    loop {
        while let Some(end) = head[line_start..].iter().position(|&b| b == b'\n') {
            if is_module_statement(&head[line_start..line_start + end]) {
                return Ok(true);
            }
            line_start += end + 1;
        }
        if head.len() > MOD_LOOK_BYTES {
            return Ok(true);
        }
        if !read_more(body, head, gap).await? {
            return Ok(is_module_statement(&head[line_start..]));
        }
    }
}

/// Whether a whole go.mod has a module statement, as go requires.
pub(crate) fn has_module_statement(go_mod: &[u8]) -> bool {
    go_mod.split(|&b| b == b'\n').any(is_module_statement)
}

/// Whether `line` of a go.mod is its module statement (`module path`, or
/// `module (` opening a block): the word `module` as go's modfile lexer
/// reads a first token, ended by a space, a bracket, a comma, a comment or
/// the line's end. Lenient where unsure (a byte-order mark, other bytes
/// that end no token but are not ASCII): only what go surely refuses is
/// refused.
fn is_module_statement(line: &[u8]) -> bool {
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line).trim_ascii_start();
    let Some(rest) = line.strip_prefix(b"module") else {
        return false;
    };
    match rest.first() {
        None => true,
        Some(&c) => c <= b' ' || !c.is_ascii() || b"()[]{},".contains(&c) || rest.starts_with(b"//"),
    }
}

/// The whole of a body of at most [`MAX_INFO_BYTES`].
async fn read_small(mut body: Body, gap: Duration) -> Result<Bytes, Refused> {
    let mut bytes = BytesMut::new();
    while let Some(frame) = next_frame(&mut body, gap, bytes.len()).await? {
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > MAX_INFO_BYTES {
                return Err(Refused::Answer(format!("larger than {} KiB", MAX_INFO_BYTES / 1024)));
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes.freeze())
}

/// The file asked for, for messages: `.info of m@v`, `.mod of m@v` or
/// `@latest of m`.
pub(crate) fn what(request: &ModuleRequest) -> String {
    match request {
        ModuleRequest::Info { module, version } => format!(".info of {module}@{version}"),
        ModuleRequest::Mod { module, version } => format!(".mod of {module}@{version}"),
        ModuleRequest::Zip { module, version } => format!(".zip of {module}@{version}"),
        ModuleRequest::List { module } => format!("@v/list of {module}"),
        ModuleRequest::Latest { module } => format!("@latest of {module}"),
        ModuleRequest::Sumdb { db, .. } => format!("a request to checksum database {db}"),
    }
}

/// Checks `.info` JSON the way `go` reads it: an object whose `Version` is a
/// canonical version (`wanted`, when the request named one) and whose
/// `Time`, when present, is an RFC 3339 time.
pub(crate) fn check_info(bytes: &[u8], wanted: Option<&str>) -> Result<(), String> {
    let members: Members = serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => "not a JSON object".to_owned(),
        _ => format!("not JSON ({e})"),
    })?;
    let version = match members.field("Version") {
        Some(serde_json::Value::String(v)) => v.as_str(),
        Some(_) => return Err("\"Version\" is not a string".into()),
        None => return Err("no \"Version\"".into()),
    };
    if let Some(wanted) = wanted {
        if version != wanted {
            return Err(format!("it is for version {version}, not {wanted}"));
        }
    } else if !is_canonical(version) {
        return Err(format!("\"Version\" {version} is not a canonical version"));
    }
    match members.field("Time") {
        None => Ok(()),
        Some(serde_json::Value::String(t)) => match go_rfc3339(t) {
            true => Ok(()),
            false => Err(format!("\"Time\" {t} is not an RFC 3339 time as go reads one")),
        },
        Some(_) => Err("\"Time\" is not a string".into()),
    }
}

/// The version a `.info` or `@latest` answer names, read as go reads it
/// (the last member whose name folds to `Version`), when it is whole,
/// canonical, and passes [`check_info`] as that version's own `.info`.
pub(crate) fn info_version(bytes: &[u8]) -> Option<String> {
    let members: Members = serde_json::from_slice(bytes).ok()?;
    let version = members.field("Version")?.as_str()?.to_owned();
    check_info(bytes, Some(&version)).ok()?;
    Some(version)
}

/// A JSON object's members in the order they came: go's `encoding/json`
/// gives a field the last member whose name matches it, ignoring case,
/// which a map of distinct keys cannot tell.
struct Members(Vec<(String, serde_json::Value)>);

impl Members {
    /// The value go's decoder leaves in the struct field `name`: the last
    /// member whose name folds to it (a `null` changes nothing).
    fn field(&self, name: &str) -> Option<&serde_json::Value> {
        self.0
            .iter()
            .rev()
            .find(|(key, value)| !value.is_null() && go_fold_eq(key, name))
            .map(|(_, value)| value)
    }
}

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Members, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, serde_json::Value>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

/// Whether a JSON member name matches a field name as go's decoder folds
/// case: ASCII letters either way, and the two non-ASCII letters that fold
/// to ASCII ones (`ſ` to `s`, the Kelvin sign `K` to `k`).
fn go_fold_eq(key: &str, name: &str) -> bool {
    let fold = |c: char| match c {
        '\u{17F}' => 's',
        '\u{212A}' => 'k',
        c => c.to_ascii_lowercase(),
    };
    key.chars().map(fold).eq(name.chars().map(fold))
}

/// Whether go's `time.Parse(time.RFC3339, t)` reads `t`: RFC 3339 with an
/// upper-case `T` and `Z`, and no leap second.
fn go_rfc3339(t: &str) -> bool {
    let b = t.as_bytes();
    let upper = b.get(10) == Some(&b'T') && !t.ends_with('z');
    let second_ok = b.get(17..19).is_some_and(|s| s < &b"60"[..]);
    upper && second_ok && time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_is_checked_as_go_reads_it() {
        let good = br#"{"Version":"v1.0.0","Time":"2024-01-02T03:04:05Z"}"#;
        assert_eq!(check_info(good, Some("v1.0.0")), Ok(()));
        assert_eq!(check_info(good, None), Ok(()));
        let with_origin = br#"{"Version":"v1.0.0","Time":"2024-01-02T03:04:05.123+02:00","Origin":{"VCS":"git"}}"#;
        assert_eq!(check_info(with_origin, Some("v1.0.0")), Ok(()));
        assert_eq!(
            check_info(br#"{"Version":"v0.0.0-20240102030405-abcdefabcdef"}"#, None),
            Ok(())
        );
        let bad: [(&[u8], Option<&str>, &str); 8] = [
            (br#"{"Version": "v1.0.0", "Time": "#, Some("v1.0.0"), "not JSON"),
            (b"[1]", None, "not a JSON object"),
            (br#"{"Time":"2024-01-02T03:04:05Z"}"#, None, "no \"Version\""),
            (br#"{"Version":1}"#, None, "not a string"),
            (
                br#"{"Version":"v9.9.9"}"#,
                Some("v1.0.0"),
                "for version v9.9.9, not v1.0.0",
            ),
            (br#"{"Version":"master"}"#, None, "not a canonical version"),
            (
                br#"{"Version":"v1.0.0","Time":"yesterday"}"#,
                None,
                "not an RFC 3339 time",
            ),
            (br#"{"Version":"v1.0.0","Time":5}"#, None, "\"Time\" is not a string"),
        ];
        for (body, wanted, why) in bad {
            let err = check_info(body, wanted).unwrap_err();
            assert!(err.contains(why), "{}: {err}", String::from_utf8_lossy(body));
        }
        // As go's decoder: names fold case, the last one wins, null
        // changes nothing.
        assert_eq!(check_info(br#"{"version":"v1.0.0"}"#, Some("v1.0.0")), Ok(()));
        assert_eq!(
            check_info("{\"VER\u{17F}ION\":\"v1.0.0\"}".as_bytes(), Some("v1.0.0")),
            Ok(())
        );
        assert_eq!(
            check_info(br#"{"Version":"v1.0.0","version":null}"#, Some("v1.0.0")),
            Ok(())
        );
        let last = check_info(br#"{"Version":"v1.0.0","VERSION":"v9.9.9"}"#, Some("v1.0.0")).unwrap_err();
        assert!(last.contains("for version v9.9.9"), "{last}");
        // Times go's time.Parse refuses.
        for time in ["2024-01-01t00:00:00z", "2024-01-01T00:00:00z", "2016-12-31T23:59:60Z"] {
            let body = format!(r#"{{"Version":"v1.0.0","Time":"{time}"}}"#);
            let err = check_info(body.as_bytes(), None).unwrap_err();
            assert!(err.contains("not an RFC 3339 time"), "{time}: {err}");
        }
    }

    #[tokio::test]
    async fn a_bad_or_oversized_answer_is_the_sources_failure() {
        let info = ModuleRequest::Info {
            module: "example.com/m".into(),
            version: "v1.0.0".into(),
        };
        let answer = |body: Vec<u8>| Response::new(full(body));
        let check = |body: &[u8]| {
            checked(
                &info,
                answer(body.to_vec()),
                "https://m.test",
                Duration::from_secs(5),
                None,
            )
        };
        let ok = check(br#"{"Version":"v1.0.0"}"#).await.unwrap();
        assert_eq!(ok.headers()[header::CONTENT_LENGTH], "20");
        assert_eq!(
            ok.into_body().collect().await.unwrap().to_bytes(),
            &br#"{"Version":"v1.0.0"}"#[..]
        );
        // A mirror's own words about its content never pass for a broken
        // body (which its health would count).
        let err = check(br#"{"Version":"its body failed after 3 bytes"}"#)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::BadAnswer { .. }), "{err}");
        let err = check(br#"{"Version":"v2.0.0"}"#).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "upstream https://m.test sent a bad answer: .info of example.com/m@v1.0.0: it is for version v2.0.0, not v1.0.0"
        );
        let huge = format!(r#"{{"Version":"v1.0.0","Pad":"{}"}}"#, "x".repeat(MAX_INFO_BYTES));
        let err = check(huge.as_bytes()).await.unwrap_err();
        assert!(err.to_string().ends_with("larger than 64 KiB"), "{err}");
        // Other files, and answers other than 200, are not read here.
        let zip = ModuleRequest::Zip {
            module: "example.com/m".into(),
            version: "v1.0.0".into(),
        };
        // A zip still arriving after the read-ahead: its first bytes are
        // compared as far as they go (a first frame may be short), the rest
        // is checked as it is cached.
        let arriving = |first: &'static [u8]| {
            let rest = futures_util::stream::iter([Ok(Frame::data(Bytes::from_static(first)))]).chain(
                futures_util::stream::iter([Ok(Frame::data(Bytes::from_static(b"rest")))]).then(|f| async move {
                    tokio::time::sleep(READ_AHEAD_FOR * 3).await;
                    f
                }),
            );
            let frames: Body = StreamBody::new(rest.map(|f: Result<_, crate::core::body::BoxError>| f)).boxed_unsync();
            Response::new(frames)
        };
        for first in [&b"PK\x03\x04"[..], b"PK"] {
            let resp = checked(&zip, arriving(first), "s", Duration::from_secs(5), None)
                .await
                .unwrap();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(body, [first, b"rest"].concat());
        }
        // A zip that arrived whole is checked as go checks a module zip:
        // a broken one is the mirror's failure, so `|` moves on.
        let good = module_zip(&[("example.com/m@v1.0.0/go.mod", "module example.com/m\n")]);
        let resp = checked(&zip, answer(good.clone()), "s", Duration::from_secs(5), None)
            .await
            .unwrap();
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), good);
        assert!(
            checked(&zip, answer(module_zip(&[])), "s", Duration::from_secs(5), None)
                .await
                .is_ok()
        );
        for (broken, why) in [
            (module_zip(&[("example.com/m@v1.0.0/../x.go", "package x\n")]), "x.go"),
            (module_zip(&[("example.com/other@v1.0.0/a.go", "package a\n")]), "a.go"),
            (b"PK\x03\x04rest".to_vec(), "zip"),
        ] {
            let err = checked(&zip, answer(broken), "https://m.test", Duration::from_secs(5), None)
                .await
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("upstream https://m.test sent a bad answer: .zip of example.com/m@v1.0.0: it is not a module zip go would accept:") && err.contains(why),
                "{err}"
            );
        }
        for page in [&b"<html>Sign in</html>"[..], b"PKZIP", b"P\n", b""] {
            let err = checked(
                &zip,
                answer(page.to_vec()),
                "https://m.test",
                Duration::from_secs(5),
                None,
            )
            .await
            .unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("upstream https://m.test sent a bad answer: .zip of example.com/m@v1.0.0: it is not a zip (it starts with"),
                "{err}"
            );
        }
        let mut gone = answer(b"gone".to_vec());
        *gone.status_mut() = StatusCode::GONE;
        assert!(checked(&info, gone, "s", Duration::from_secs(5), None).await.is_ok());
    }

    #[test]
    fn a_module_statement_is_the_word_module_as_gos_lexer_reads_it() {
        for line in [
            "module example.com/m",
            "  module\texample.com/m // comment",
            "module \"example.com/m\"",
            "module (",
            "module(",
            "module// comment",
            "module",
            "\u{feff}module example.com/m",
        ] {
            assert!(is_module_statement(line.as_bytes()), "{line:?}");
        }
        for line in [
            "",
            "// module example.com/m",
            "modules example.com/m",
            "module/x example.com/m",
            "module\"example.com/m\"",
            "go 1.22",
            "<!DOCTYPE html>",
            "\trequire module v1.0.0",
        ] {
            assert!(!is_module_statement(line.as_bytes()), "{line:?}");
        }
    }

    /// A zip of `files` (name, content), as a mirror would send it.
    fn module_zip(files: &[(&str, &str)]) -> Vec<u8> {
        use std::io::Write;
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, content) in files {
            zip.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            zip.write_all(content.as_bytes()).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    /// A body of `chunks`, each its own frame.
    fn in_frames(chunks: &[&'static [u8]]) -> Body {
        let frames: Vec<Result<Frame<Bytes>, crate::core::body::BoxError>> =
            chunks.iter().map(|c| Ok(Frame::data(Bytes::from_static(c)))).collect();
        StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    }

    #[tokio::test]
    async fn a_mod_is_read_to_its_module_line_and_passes_whole() {
        let go_mod = ModuleRequest::Mod {
            module: "example.com/m".into(),
            version: "v1.0.0".into(),
        };
        let check = |chunks: &[&'static [u8]]| {
            checked(
                &go_mod,
                Response::new(in_frames(chunks)),
                "https://m.test",
                Duration::from_secs(5),
                None,
            )
        };
        // Comments first, the statement split across frames, no newline at
        // the end: the client gets every byte, in order.
        let chunks: [&[u8]; 4] = [
            b"// Copyright\r\n\n",
            b"mod",
            b"ule example.com/m\n\ngo 1.22\n",
            b"require x v1",
        ];
        let ok = check(&chunks).await.unwrap();
        assert_eq!(ok.into_body().collect().await.unwrap().to_bytes(), chunks.concat());
        let last_line = check(&[b"go 1.22\nmodule example.com/m"]).await.unwrap();
        assert_eq!(
            last_line.into_body().collect().await.unwrap().to_bytes(),
            &b"go 1.22\nmodule example.com/m"[..]
        );
        // What go refuses: no module statement at all.
        for refused in [
            &b"<html><body>Please log in</body></html>\n"[..],
            b"",
            b"go 1.22\nrequire (\n)\n",
        ] {
            let err = check(&[refused]).await.unwrap_err();
            assert_eq!(
                err.to_string(),
                "upstream https://m.test sent a bad answer: .mod of example.com/m@v1.0.0: it has no module line, so go would refuse it (\"missing module line\")"
            );
        }
        // A mirror that sends a comment and then stalls is cut off at the
        // timeout, not waited for.
        let stalled = futures_util::stream::iter([Ok(Frame::data(Bytes::from_static(b"// a\n")))]).chain(
            futures_util::stream::pending::<Result<Frame<Bytes>, crate::core::body::BoxError>>(),
        );
        let stalled = Response::new(StreamBody::new(stalled).boxed_unsync());
        let err = checked(&go_mod, stalled, "https://m.test", Duration::from_millis(50), None)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .ends_with("its module line did not arrive: no byte came for 50ms after 5 bytes"),
            "{err}"
        );
        // One that trickles, each frame within the gap but all of them
        // past it, is read to its end.
        let trickle = futures_util::stream::iter([&b"// a\n"[..], b"// b\n", b"// c\n", b"module example.com/m\n"])
            .then(|chunk| async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                Ok::<_, crate::core::body::BoxError>(Frame::data(Bytes::from_static(chunk)))
            });
        let trickle = Response::new(StreamBody::new(trickle).boxed_unsync());
        let whole = checked(&go_mod, trickle, "https://m.test", Duration::from_millis(50), None)
            .await
            .unwrap();
        assert_eq!(
            whole.into_body().collect().await.unwrap().to_bytes(),
            &b"// a\n// b\n// c\nmodule example.com/m\n"[..]
        );
        // Past the look-ahead, the rest streams unjudged.
        let long: &'static [u8] = Box::leak(vec![b'/'; MOD_LOOK_BYTES + 1].into_boxed_slice());
        let unjudged = check(&[long, b"\nno statement\n"]).await.unwrap();
        assert_eq!(
            unjudged.into_body().collect().await.unwrap().to_bytes().len(),
            MOD_LOOK_BYTES + 15
        );
    }
}
