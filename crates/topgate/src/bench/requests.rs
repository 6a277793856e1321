//! The signed requests of `topgate bench`: one distinct, correctly signed form body per index
//! for each API, and the classification of answers (success, TOP error code, business refusal).
//!
//! Bodies are built and signed with top-protocol's own signer, so the server verifies exactly
//! what a real client sends. Distinctness comes from the index and a per-run tag: pay notices
//! get fresh outer/idempotent ids, supplier and opentrade notices each target an order of their
//! own, lianbei reads spread over the orders that exist.

use bytes::Bytes;
use serde_json::json;
use time::OffsetDateTime;
use top_protocol::sign::sign_params;
use top_protocol::{timestamp, ParamSet, SignMethod};

/// The APIs `topgate bench` can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    Pay,
    Lianbei,
    Supplier,
    Opentrade,
    Mix,
    Healthz,
}

impl Api {
    pub fn name(self) -> &'static str {
        match self {
            Api::Pay => "pay",
            Api::Lianbei => "lianbei",
            Api::Supplier => "supplier",
            Api::Opentrade => "opentrade",
            Api::Mix => "mix",
            Api::Healthz => "healthz",
        }
    }

    pub fn method(self) -> &'static str {
        match self {
            Api::Pay => crate::api::diantao::METHOD,
            Api::Lianbei => crate::api::lianbei::METHOD,
            Api::Supplier => crate::api::carrier::METHOD,
            Api::Opentrade => crate::api::opentrade::METHOD,
            Api::Mix => "mix",
            Api::Healthz => "GET /healthz",
        }
    }

    /// The API a mixed run sends at index `i`, and that API's own index.
    pub fn of_mix(i: u64) -> (Api, u64) {
        const ORDER: [Api; 4] = [Api::Pay, Api::Lianbei, Api::Supplier, Api::Opentrade];
        (ORDER[(i % 4) as usize], i / 4)
    }
}

/// Who signs and which orders the requests target.
#[derive(Debug, Clone)]
pub struct Plan {
    pub app_key: String,
    pub secret: String,
    pub session: String,
    pub sign_method: SignMethod,
    /// Distinguishes this run's outer ids, request ids, … from earlier runs on the same data.
    pub tag: String,
    /// Lianbei orders to read: `lianbei.0 + k` for `k < lianbei.1`.
    pub lianbei: (i64, u64),
    /// Carrier orders prepared for this run (each notified once).
    pub carrier: (i64, u64),
    /// Opentrade orders prepared for this run (each called back once).
    pub opentrade: (i64, u64),
}

/// The form body of request `i` of `api` (not `Mix` nor `Healthz`).
pub fn body(plan: &Plan, api: Api, i: u64, now: OffsetDateTime) -> Bytes {
    let mut p = ParamSet::new();
    p.set("method", api.method());
    p.set("app_key", plan.app_key.as_str());
    p.set("timestamp", timestamp::format_wall_clock(now));
    p.set("v", "2.0");
    p.set("sign_method", plan.sign_method.as_wire());
    p.set("format", "json");
    let tag = &plan.tag;
    match api {
        Api::Pay => {
            let id = format!("bench-{tag}-{i}");
            let dto = json!({
                "extend": "{}", "biz": "bench", "amount": 100, "phone_number": "18072887365",
                "pay_time": crate::clock::millis(now) - 1000, "right_code": "flowPacket",
                "idempotent_id": id, "biz_scene": "bench", "title": "流量包",
                "channel_id": 1234, "source": "中国移动", "outer_order_id": id,
            });
            p.set(crate::api::diantao::PARAM, dto.to_string());
        }
        Api::Lianbei => {
            let (base, n) = plan.lianbei;
            // A multiplicative hash spreads consecutive indexes over the whole range, so that a
            // large store is read all over rather than in one hot corner.
            let k = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) % n.max(1);
            p.set("biz_order_id", (base + k as i64).to_string());
        }
        Api::Supplier => {
            let (base, n) = plan.carrier;
            let tid = base + (i % n.max(1)) as i64;
            let model = json!({"biz_type": "30", "notify_type": "2", "order_no": tid.to_string(),
                "receive_status": true});
            p.set(crate::api::carrier::PARAM, model.to_string());
        }
        Api::Opentrade => {
            let (base, n) = plan.opentrade;
            let tid = base + (i % n.max(1)) as i64;
            let param = json!({"order_no": tid, "sub_order_no": tid, "success": true,
                "result_code": "0000", "result_desc": "ok", "req_id": format!("bench-{tag}-{i}")});
            p.set("session", plan.session.as_str());
            p.set(crate::api::opentrade::PARAM, param.to_string());
        }
        Api::Mix => {
            let (api, k) = Api::of_mix(i);
            return body(plan, api, k, now);
        }
        Api::Healthz => return Bytes::new(),
    }
    let sign = sign_params(plan.sign_method, &plan.secret, &p);
    p.set("sign", sign);
    Bytes::from(p.to_form())
}

/// What an answer was: `None` for a success, else a short code for the error table
/// (`top:<code>[/<sub_code>]`, `biz:<code>`, `http:<status>`).
pub fn classify(api: Api, status: u16, body: &[u8]) -> Option<String> {
    if status != 200 {
        return Some(format!("http:{status}"));
    }
    // Substring checks first: parsing every answer would tax the generator, which shares the
    // CPU with the server; only failures are parsed.
    let ok_marker: &[u8] = match api {
        Api::Pay => br#""succ":true"#,
        Api::Lianbei => br#""alisp_code":200"#,
        Api::Supplier | Api::Opentrade => br#""success":true"#,
        Api::Healthz => return None,
        Api::Mix => {
            return [Api::Pay, Api::Lianbei, Api::Supplier]
                .iter()
                .all(|a| classify(*a, status, body).is_some())
                .then(|| describe_failure(body));
        }
    };
    if !contains(body, b"\"error_response\"") && contains(body, ok_marker) {
        return None;
    }
    Some(describe_failure(body))
}

fn describe_failure(body: &[u8]) -> String {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return "unparsable".into();
    };
    if let Some(e) = v.get("error_response") {
        let code = e.get("code").map(|c| c.to_string()).unwrap_or_default();
        return match e.get("sub_code").and_then(|s| s.as_str()) {
            Some(sub) => format!("top:{code}/{sub}"),
            None => format!("top:{code}"),
        };
    }
    // Business refusals: the code field of whichever API answered.
    let mut found = None;
    find_code(&v, &mut found);
    format!("biz:{}", found.unwrap_or_else(|| "unknown".into()))
}

fn find_code(v: &serde_json::Value, found: &mut Option<String>) {
    if found.is_some() {
        return;
    }
    if let Some(map) = v.as_object() {
        for key in ["msg_code", "error_code", "code", "alisp_code"] {
            if let Some(c) = map.get(key).filter(|c| !c.is_null()) {
                *found = Some(c.as_str().map_or_else(|| c.to_string(), str::to_string));
                return;
            }
        }
        for child in map.values() {
            find_code(child, found);
        }
    }
}

/// A vectorised search: a byte-by-byte window compare over every answer cost the generator
/// a fifth of its instructions per lianbei call.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_successes_errors_and_refusals() {
        let ok =
            br#"{"alibaba_diantao_tripartite_right_pay_notify_response":{"result":{"succ":true}}}"#;
        assert_eq!(classify(Api::Pay, 200, ok), None);
        let err = br#"{"error_response":{"code":25,"msg":"Invalid signature","request_id":"x"}}"#;
        assert_eq!(classify(Api::Pay, 200, err).as_deref(), Some("top:25"));
        let refused = br#"{"r":{"result":{"msg_info":"x","msg_code":"10006","succ":false}}}"#;
        assert_eq!(
            classify(Api::Pay, 200, refused).as_deref(),
            Some("biz:10006")
        );
        assert_eq!(
            classify(Api::Healthz, 503, b"").as_deref(),
            Some("http:503")
        );
    }

    #[test]
    fn bodies_are_distinct_and_verify() {
        let plan = Plan {
            app_key: "test".into(),
            secret: "test".into(),
            session: "test-session".into(),
            sign_method: SignMethod::HmacSha256,
            tag: "t".into(),
            lianbei: (1000, 1),
            carrier: (10, 5),
            opentrade: (20, 5),
        };
        let now = OffsetDateTime::now_utc();
        for api in [Api::Pay, Api::Supplier, Api::Opentrade, Api::Mix] {
            let a = body(&plan, api, 0, now);
            let b = body(&plan, api, 1, now);
            assert_ne!(a, b);
            let set = ParamSet::from_request(None, None, &a).unwrap();
            assert!(top_protocol::sign::verify(
                SignMethod::HmacSha256,
                "test",
                &set,
                None,
                set.get("sign").unwrap()
            ));
        }
    }
}
