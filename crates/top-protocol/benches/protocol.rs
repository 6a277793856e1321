//! Criterion micro-benchmarks of the protocol's per-request work: parsing a request's
//! parameters (form and multipart bodies), the three signers over a realistic canonical
//! string, and the envelope writer (JSON, simplified JSON, XML). Run with `cargo bench -p
//! top-protocol`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use top_protocol::envelope::write_success;
use top_protocol::sign::{sign_params, string_to_sign};
use top_protocol::{Format, Object, ParamSet, SignMethod};

/// A `right.pay.notify` call as an SDK sends it: system parameters plus one JSON object.
fn pay_params() -> ParamSet {
    let mut p = ParamSet::new();
    p.set("method", "alibaba.diantao.tripartite.right.pay.notify");
    p.set("app_key", "12345678");
    p.set("timestamp", "2024-01-01 12:00:00");
    p.set("v", "2.0");
    p.set("sign_method", "hmac-sha256");
    p.set("format", "json");
    p.set("partner_id", "top-sdk-java-20240101");
    p.set(
        "tripartite_pay_notify_dto",
        r#"{"extend":"{}","biz":"业务标识","amount":100,"phone_number":"18072887365","pay_time":1661766890994,"right_code":"flowPacket","idempotent_id":"18072887365_11434434554","biz_scene":"xx","title":"流量包","channel_id":1234,"source":"中国移动","outer_order_id":"1057706761588580000"}"#,
    );
    let sign = sign_params(SignMethod::HmacSha256, "secret", &p);
    p.set("sign", sign);
    p
}

fn multipart_body(params: &ParamSet, boundary: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in params.iter() {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n{value}\r\n").as_bytes());
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

fn parser(c: &mut Criterion) {
    let params = pay_params();
    let form = params.to_form();
    let boundary = "----topgatebenchboundary7MA4YWxkTrZu0gW";
    let multipart = multipart_body(&params, boundary);
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let mut group = c.benchmark_group("parse");
    group.bench_function("form", |b| {
        b.iter(|| {
            ParamSet::from_request(
                black_box(Some("format=json")),
                Some("application/x-www-form-urlencoded;charset=utf-8"),
                black_box(form.as_bytes()),
            )
            .expect("valid form")
        })
    });
    group.bench_function("multipart", |b| {
        b.iter(|| {
            ParamSet::from_request(None, Some(&content_type), black_box(&multipart))
                .expect("valid multipart")
        })
    });
    group.finish();
}

fn signers(c: &mut Criterion) {
    let params = pay_params();
    let mut group = c.benchmark_group("sign");
    group.bench_function("canonical_string", |b| {
        b.iter(|| string_to_sign(black_box(&params), None))
    });
    for method in SignMethod::ALL {
        group.bench_function(method.as_wire(), |b| {
            b.iter(|| {
                sign_params(
                    method,
                    black_box("0123456789abcdef0123456789abcdef"),
                    &params,
                )
            })
        });
    }
    group.finish();
}

/// The lianbei order object: the largest of the four answers.
fn lianbei_answer() -> Object {
    let dto = Object::new()
        .field("biz_order_id", "1000")
        .field("gmt_create", "2018-10-15 00:00:00")
        .field("pay_time", "2018-10-15 00:00:00")
        .field("end_time", "2018-10-15 00:00:00")
        .field("buyer_nick", "买**称")
        .field("auction_id", 10000i64)
        .field("auction_title", "测试商品 <限量> & \"特价\"")
        .field("auction_pic_url", "http://url")
        .field("auction_price", 1i64)
        .field("buy_amount", 1i64)
        .field("discount_fee", 0i64)
        .field("tf", 1i64)
        .field("mobile", "138****0000")
        .field("source", "xpos")
        .field("sku_id", 0i64)
        .field("sku", "sku")
        .field("nego_price", 0i64)
        .field("status", 100i64)
        .field("guider_id", "1")
        .field("guider_name", "导购员名称")
        .field("operator_id", "1")
        .field("operator_name", "收营员名称")
        .field("out_id", "业务订单id");
    Object::new().field(
        "result",
        Object::new()
            .field("alisp_code", 200i64)
            .field("alisp_data", dto)
            .field("alisp_msg", "success"),
    )
}

fn envelope(c: &mut Criterion) {
    let body = lianbei_answer();
    let method = "alibaba.alisports.lianbei.order.notice";
    let mut group = c.benchmark_group("envelope");
    for (name, format, simplify) in [
        ("json", Format::Json, false),
        ("json_simplified", Format::Json, true),
        ("xml", Format::Xml, false),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| write_success(method, black_box(&body), "3n2wmbbhkcwx", format, simplify))
        });
    }
    group.finish();
}

criterion_group!(benches, parser, signers, envelope);
criterion_main!(benches);
