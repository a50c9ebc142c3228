//! Checking a `.info` or `@latest` answer before it is served or cached.
//!
//! `go` reads these as JSON (`{"Version": "...", "Time": "..."}`) and
//! refuses one that does not parse, or whose `Version` is not the canonical
//! version it asked for. The cache keeps the `.info` of a canonical version
//! forever, so a mirror's one bad answer would otherwise break that version
//! until someone removed it by hand. They are small, so the whole answer is
//! read and checked here. A bad one is that mirror's failure: a 502 naming
//! it, and `|` moves on to the next mirror. It is never cached, and it does
//! not count against the mirror's health (the mirror is up; this one
//! answer is wrong).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Response, StatusCode, header};
use http_body_util::BodyExt;

use crate::core::body::{Body, full};
use crate::core::error::Error;
use crate::core::timer;
use crate::gomod::request::{MAX_INFO_BYTES, ModuleRequest};
use crate::gomod::semver::is_canonical;

/// `resp`, a source's 200 answer to `request`, with its body read and
/// checked when `request` is a `.info` or `@latest`; other answers pass
/// untouched. `source` names the answer's source in errors; `timeout`
/// bounds the wait for the body.
pub async fn checked(
    request: &ModuleRequest,
    resp: Response<Body>,
    source: &str,
    timeout: Duration,
) -> Result<Response<Body>, Error> {
    let wanted = match request {
        ModuleRequest::Info { version, .. } => is_canonical(version).then_some(version.as_str()),
        ModuleRequest::Latest { .. } => None,
        _ => return Ok(resp),
    };
    if resp.status() != StatusCode::OK {
        return Ok(resp);
    }
    let failed = |reason: String| Error::BadAnswer {
        target: source.to_owned(),
        reason: format!("{}: {reason}", what(request)),
    };
    let (mut parts, body) = resp.into_parts();
    let bytes = match timer::timeout(timeout, read_small(body)).await {
        Err(_) => return Err(failed(format!("its body did not arrive within {timeout:?}"))),
        Ok(read) => read.map_err(failed)?,
    };
    check_info(&bytes, wanted).map_err(failed)?;
    parts.headers.remove(header::TRANSFER_ENCODING);
    parts.headers.insert(header::CONTENT_LENGTH, bytes.len().into());
    Ok(Response::from_parts(parts, full(bytes)))
}

/// The whole of a body of at most [`MAX_INFO_BYTES`].
async fn read_small(mut body: Body) -> Result<Bytes, String> {
    let mut bytes = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("its body failed after {} bytes: {e}", bytes.len()))?;
        if let Ok(data) = frame.into_data() {
            if bytes.len() + data.len() > MAX_INFO_BYTES {
                return Err(format!("larger than {} KiB", MAX_INFO_BYTES / 1024));
            }
            bytes.extend_from_slice(&data);
        }
    }
    Ok(bytes.freeze())
}

/// The file asked for, for messages: `.info of m@v` or `@latest of m`.
fn what(request: &ModuleRequest) -> String {
    match request {
        ModuleRequest::Info { module, version } => format!(".info of {module}@{version}"),
        other => format!("@{} of {}", other.kind(), other.module().unwrap_or("-")),
    }
}

/// Checks `.info` JSON the way `go` reads it: an object whose `Version` is a
/// canonical version (`wanted`, when the request named one) and whose
/// `Time`, when present, is an RFC 3339 time.
fn check_info(bytes: &[u8], wanted: Option<&str>) -> Result<(), String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON ({e})"))?;
    let object = value.as_object().ok_or("not a JSON object")?;
    let version = match object.get("Version") {
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
    match object.get("Time") {
        None | Some(serde_json::Value::Null) => Ok(()),
        Some(serde_json::Value::String(t)) => {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map(|_| ())
                .map_err(|_| format!("\"Time\" {t} is not an RFC 3339 time"))
        }
        Some(_) => Err("\"Time\" is not a string".into()),
    }
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
    }

    #[tokio::test]
    async fn a_bad_or_oversized_answer_is_the_sources_failure() {
        let info = ModuleRequest::Info {
            module: "example.com/m".into(),
            version: "v1.0.0".into(),
        };
        let answer = |body: Vec<u8>| Response::new(full(body));
        let check = |body: &[u8]| checked(&info, answer(body.to_vec()), "https://m.test", Duration::from_secs(5));
        let ok = check(br#"{"Version":"v1.0.0"}"#).await.unwrap();
        assert_eq!(ok.headers()[header::CONTENT_LENGTH], "20");
        assert_eq!(
            ok.into_body().collect().await.unwrap().to_bytes(),
            &br#"{"Version":"v1.0.0"}"#[..]
        );
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
        assert!(
            checked(&zip, answer(b"PK".to_vec()), "s", Duration::from_secs(5))
                .await
                .is_ok()
        );
        let mut gone = answer(b"gone".to_vec());
        *gone.status_mut() = StatusCode::GONE;
        assert!(checked(&info, gone, "s", Duration::from_secs(5)).await.is_ok());
    }
}
