//! The shared signature vectors (../shared/vectors/signatures.json) and the wire captures of real
//! client SDKs (../shared/vectors/wire/): the canonical string and the sign must match exactly.

use std::path::PathBuf;

use top_protocol::sign::{sign_string, string_to_sign, verify};
use top_protocol::{ParamSet, SignMethod};

fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors")
}

#[test]
fn every_signature_vector_verifies() {
    let text = std::fs::read_to_string(shared().join("signatures.json")).expect("vectors file");
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let vectors = doc["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 10);
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let method = SignMethod::from_wire(v["sign_method"].as_str().unwrap()).unwrap();
        let secret = v["secret"].as_str().unwrap();
        let mut params = ParamSet::new();
        for (k, val) in v["params"].as_object().unwrap() {
            params.insert(k.clone(), val.as_str().unwrap());
        }
        let body = v.get("body").and_then(|b| b.as_str());
        let canonical = string_to_sign(&params, body);
        assert_eq!(canonical, v["string_to_sign"].as_str().unwrap(), "{name}");
        let expected = v["sign"].as_str().unwrap();
        assert_eq!(sign_string(method, secret, &canonical), expected, "{name}");
        assert!(
            verify(method, secret, &params, body, &expected.to_lowercase()),
            "{name}"
        );
    }
}

#[test]
fn wire_captures_parse_and_verify() {
    let mut checked = 0;
    for client in ["node-taobao-topclient", "py-taobao-open"] {
        let dir = shared().join("wire").join(client);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let Some(stem) = path.to_str().and_then(|p| p.strip_suffix(".http")) else {
                continue;
            };
            let meta: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(format!("{stem}.meta.json")).unwrap(),
            )
            .unwrap();
            let raw = std::fs::read(&path).unwrap();
            let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
            let head = String::from_utf8_lossy(&raw[..split]).into_owned();
            let body = &raw[split + 4..];
            let target = head.lines().next().unwrap().split(' ').nth(1).unwrap();
            let query = target.split_once('?').map(|(_, q)| q);
            let content_type = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-type")
                    .then(|| v.trim().to_string())
            });
            let params = ParamSet::from_request(query, content_type.as_deref(), body).unwrap();
            for (k, v) in meta["params"].as_object().unwrap() {
                assert_eq!(params.get(k), v.as_str(), "{stem}: {k}");
            }
            assert_eq!(params.len(), meta["params"].as_object().unwrap().len());
            assert_eq!(
                string_to_sign(&params, None),
                meta["string_to_sign"].as_str().unwrap()
            );
            let method = SignMethod::from_wire(meta["sign_method"].as_str().unwrap()).unwrap();
            assert!(verify(
                method,
                meta["app_secret"].as_str().unwrap(),
                &params,
                None,
                meta["sign_sent"].as_str().unwrap()
            ));
            checked += 1;
        }
    }
    assert!(checked >= 9, "only {checked} captures found");
}
