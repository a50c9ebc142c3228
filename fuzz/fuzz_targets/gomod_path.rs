//! GOPROXY and checksum-database path classification (`gomod::classify`)
//! and the two escapings (`gomod::escape`).
//!
//! Properties: no panic; errors are one line; a classified request names
//! a module path and version that, `!`-encoded and written back into the
//! same shape of path, classify to the same request (the oracle is the
//! encoder: `decode_case(encode_case(x)) == x` for every decoded name);
//! a well-formed percent-encoding decodes to what the path meant.

#![no_main]

use libfuzzer_sys::fuzz_target;
use modgate::gomod::classify::{classify_proxy_path, classify_sumdb_path};
use modgate::gomod::escape::{decode_case, decode_path, encode_case};
use modgate::gomod::request::{ModuleRequest, SumdbKind};

fn one_line(r: &Result<Option<ModuleRequest>, String>) {
    if let Err(e) = r {
        assert!(!e.contains('\n') && !e.contains('\r'), "one-line error: {e:?}");
    }
}

/// The path `req` was classified from, written canonically.
fn written(req: &ModuleRequest) -> Option<String> {
    let e = encode_case;
    Some(match req {
        ModuleRequest::List { module } => format!("/{}/@v/list", e(module)),
        ModuleRequest::Info { module, version } => format!("/{}/@v/{}.info", e(module), e(version)),
        ModuleRequest::Mod { module, version } => format!("/{}/@v/{}.mod", e(module), e(version)),
        ModuleRequest::Zip { module, version } => format!("/{}/@v/{}.zip", e(module), e(version)),
        ModuleRequest::Latest { module } => format!("/{}/@latest", e(module)),
        ModuleRequest::Sumdb { db, kind } => match kind {
            SumdbKind::Supported => format!("/sumdb/{db}/supported"),
            SumdbKind::Latest => format!("/sumdb/{db}/latest"),
            SumdbKind::Lookup { module, version } => format!("/sumdb/{db}/lookup/{}@{}", e(module), e(version)),
            SumdbKind::Tile => return None,
        },
    })
}

fuzz_target!(|path: &str| {
    let proxy = classify_proxy_path(path);
    one_line(&proxy);
    if let Ok(Some(req)) = &proxy {
        for name in [req.module(), req.version()].into_iter().flatten() {
            assert!(!name.contains('!'), "decoded names hold no '!': {name:?}");
            assert_eq!(decode_case(&encode_case(name)).as_deref(), Ok(name));
        }
        if let Some(again) = written(req) {
            assert_eq!(classify_proxy_path(&again).as_ref(), Ok(&Some(req.clone())), "{again}");
        }
    }
    if let Some((db, rest)) = path.split_once('|') {
        let sumdb = classify_sumdb_path(db, rest);
        one_line(&sumdb);
        if let Ok(Some(ModuleRequest::Sumdb { db: got, kind })) = &sumdb {
            assert_eq!(got, db);
            // The same endpoint through a proxy classifies the same.
            let via_proxy = format!("/sumdb/{db}/{}", rest.trim_start_matches('/'));
            assert_eq!(
                classify_proxy_path(&via_proxy),
                Ok(Some(ModuleRequest::Sumdb {
                    db: db.to_owned(),
                    kind: kind.clone()
                })),
                "{via_proxy}"
            );
        }
    }
    match decode_path(path) {
        Ok(decoded) => {
            if !path.contains('%') {
                assert_eq!(decoded, path);
            }
            one_line(&classify_proxy_path(&decoded));
        }
        Err(e) => assert!(!e.contains('\n'), "{e:?}"),
    }
    if let Ok(decoded) = decode_case(path) {
        assert_eq!(encode_case(&decoded), path, "the encoding is canonical");
    }
});
