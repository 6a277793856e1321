//! The SDK round-trips every API with each sign method and each format (JSON, simplified JSON,
//! XML) against a sandbox topgate started in-process on port 0.

use top_protocol::{Format, SignMethod};
use top_sdk::apis::*;
use top_sdk::{BatchCall, Error, TopClient};

async fn sandbox() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let settings = topgate::config::Settings {
        listen: "127.0.0.1:0".into(),
        database_url: Some(format!("sqlite://{}", dir.path().join("sdk.db").display())),
        ..Default::default()
    };
    let server = topgate::Server::bind(settings, true, topgate::clock::Clock::system())
        .await
        .unwrap();
    let url = format!("http://{}/router/rest", server.addr);
    tokio::spawn(server.run());
    (url, dir)
}

fn shipment() -> SupplierNotifyRequest {
    SupplierNotifyRequest {
        param_flow_suppllier_notify_model: FlowSuppllierNotifyModel {
            biz_type: "30".into(),
            notify_type: "1".into(),
            order_no: "8888888".into(),
            ext_info: Some("<\"key\", \"value\">".into()),
            offer_invalid_date: Some("2019-09-09 12:33:00".into()),
            offer_valid_date: Some("2018-09-09 12:33:00".into()),
            out_order_no: Some("88888888".into()),
            receive_status: Some(false),
            send_good_param: Some(
                "iccid=888|TB1,999|TB2;invalidDate=20180909$12:33|TB1,20180909$12:33|TB2".into(),
            ),
            iccid: Some("888888888".into()),
            user_id: Some("888888".into()),
        },
    }
}

fn payment() -> RightPayNotifyRequest {
    RightPayNotifyRequest {
        tripartite_pay_notify_dto: TripartitePayNotifyDto {
            extend: Some("{}".into()),
            biz: Some("业务标识".into()),
            amount: Some(100),
            phone_number: Some("18072887365".into()),
            pay_time: Some(1_661_766_890_994),
            right_code: Some("flowPacket".into()),
            idempotent_id: Some("18072887365_11434434554".into()),
            biz_scene: Some("xx".into()),
            title: Some("流量包".into()),
            channel_id: Some(1234),
            source: "中国移动".into(),
            outer_order_id: "1057706761588580000".into(),
        },
    }
}

fn callback() -> OpentradeResultCallbackRequest {
    OpentradeResultCallbackRequest {
        param0: OrderResultDto {
            sub_order_no: Some(212_312),
            order_no: 12_345_678,
            success: true,
            result_code: Some("0000".into()),
            result_desc: Some("订购成功".into()),
            req_id: "channel_1212312".into(),
            ext: Some(r#"{"firstChargeAmount":"100","firstChargeTime":"1704038400000"}"#.into()),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_with_every_sign_method_and_format() {
    let (url, _dir) = sandbox().await;
    let mut order_ids = Vec::new();
    for sign_method in SignMethod::ALL {
        for (format, simplify) in [
            (Format::Json, false),
            (Format::Json, true),
            (Format::Xml, false),
        ] {
            let client = TopClient::builder(url.as_str(), "test", "test")
                .sign_method(sign_method)
                .format(format)
                .simplify(simplify)
                .session("test-session")
                .build()
                .unwrap();
            let what = format!("{sign_method} {format:?} simplify={simplify}");
            let notice = client
                .execute(&LianbeiOrderNoticeRequest { biz_order_id: 1000 })
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(notice.result.alisp_code, 200, "{what}");
            let dto = notice.result.alisp_data.expect("order data");
            assert_eq!(
                (dto.buyer_nick.as_str(), dto.mobile.as_str(), dto.status),
                ("买**称", "138****00", 100)
            );

            let shipped = client
                .execute(&shipment())
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(
                shipped.result.success && shipped.result.model,
                "{what}: {shipped:?}"
            );
            assert_eq!(shipped.result.code, "SUCCESS");

            let paid = client
                .execute(&payment())
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(paid.succ, "{what}: {paid:?}");
            order_ids.push(paid.data.expect("data").order_id);

            let done = client
                .execute(&callback())
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(done.result.success, "{what}: {done:?}");
            assert_eq!(done.result.error_code.as_deref(), Some("0000"));

            let time = client.execute(&TimeGetRequest).await.unwrap();
            assert_eq!(time.time.len(), 19);
        }
    }
    // Replays of the same payment answer the same order every time.
    order_ids.dedup();
    assert_eq!(order_ids.len(), 1);
}

#[tokio::test]
async fn errors_keep_code_sub_code_and_request_id() {
    let (url, _dir) = sandbox().await;
    for format in [Format::Json, Format::Xml] {
        let client = TopClient::builder(url.as_str(), "test", "test")
            .format(format)
            .build()
            .unwrap();
        let err = client
            .execute(&RightPayNotifyRequest::default())
            .await
            .unwrap_err();
        match err {
            Error::Top { error, request_id } => {
                assert_eq!(error.code, 50);
                assert_eq!(error.sub_code.as_deref(), Some("isv.missing-parameter"));
                assert!(error.sub_msg.unwrap().starts_with("非法参数"));
                assert!(request_id.is_some_and(|r| !r.is_empty()));
            }
            other => panic!("{other:?}"),
        }
        let err = client
            .execute(&OpentradeResultCallbackRequest {
                param0: callback().param0,
            })
            .await
            .unwrap_err();
        assert_eq!(err.top().map(|e| e.code), Some(26));
    }
    let unreachable = TopClient::builder("http://127.0.0.1:9/router/rest", "test", "test")
        .build()
        .unwrap();
    assert!(matches!(
        unreachable.execute(&TimeGetRequest).await,
        Err(Error::Transport(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_each_call_in_order_in_every_format() {
    let (url, _dir) = sandbox().await;
    for sign_method in SignMethod::ALL {
        for format in [Format::Json, Format::Xml] {
            let client = TopClient::builder(url.as_str(), "test", "test")
                .sign_method(sign_method)
                .format(format)
                .build()
                .unwrap();
            let what = format!("{sign_method} {format:?}");
            let answers = client
                .batch(&[
                    BatchCall {
                        method: "alibaba.alisports.lianbei.order.notice",
                        params: vec![("biz_order_id", "1000")],
                    },
                    BatchCall {
                        method: "taobao.time.get",
                        params: vec![],
                    },
                    BatchCall {
                        method: "no.such.method",
                        params: vec![],
                    },
                ])
                .await
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(answers.len(), 3, "{what}");
            let notice = answers[0]
                .as_ref()
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(notice.raw.contains("买**称"), "{what}: {}", notice.raw);
            assert!(answers[1].is_ok(), "{what}: {:?}", answers[1]);
            let unknown = answers[2].as_ref().expect_err("an unknown method");
            assert_eq!(unknown.top().map(|e| e.code), Some(22), "{what}");
        }
    }
    let wrong_secret = TopClient::builder(url.as_str(), "test", "not-the-secret")
        .build()
        .unwrap();
    let refused = wrong_secret
        .batch(&vec![
            BatchCall {
                method: "taobao.time.get",
                params: vec![],
            };
            2
        ])
        .await
        .expect_err("a wrong secret refuses the whole batch");
    assert_eq!(refused.top().map(|e| e.code), Some(25));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_call_batch_refused_whole_is_the_outer_error_and_its_call_failing_is_not() {
    let (url, _dir) = sandbox().await;
    let time_get = [BatchCall {
        method: "taobao.time.get",
        params: vec![],
    }];
    let wrong_secret = TopClient::builder(url.as_str(), "test", "not-the-secret")
        .build()
        .unwrap();
    let refused = wrong_secret
        .batch(&time_get)
        .await
        .expect_err("a wrong secret refuses the whole batch");
    assert_eq!(refused.top().map(|e| e.code), Some(25));
    assert_eq!(
        refused.to_string().split("; request_id").next(),
        Some("TOP error 25: Invalid signature"),
        "{refused}"
    );
    // The TOP code of a lone call's answer in a batch that passed as a whole.
    let lone_call_code = |client: TopClient, method: &'static str, params| async move {
        let answers = client
            .batch(&[BatchCall { method, params }])
            .await
            .expect("the batch itself passes");
        answers[0]
            .as_ref()
            .err()
            .and_then(Error::top)
            .map(|e| e.code)
    };
    let client = TopClient::builder(url.as_str(), "test", "test")
        .build()
        .unwrap();
    assert_eq!(
        lone_call_code(client, "no.such.method", vec![]).await,
        Some(22)
    );
    // A session is checked per call: its refusal is the call's, even alone in a batch.
    let bad_session = TopClient::builder(url.as_str(), "test", "test")
        .session("no-such-session")
        .build()
        .unwrap();
    let param0 = r#"{"order_no":12345678,"sub_order_no":212312,"success":true,"req_id":"s1"}"#;
    let opentrade = "taobao.wt.trade.opentrade.resultcallback";
    assert_eq!(
        lone_call_code(bad_session, opentrade, vec![("param0", param0)]).await,
        Some(27)
    );
}

#[tokio::test]
async fn a_transport_failure_shows_neither_the_session_nor_the_signature() {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let client = TopClient::builder("http://127.0.0.1:1/router/rest", "test", "test")
        .session("SESSION-SECRET-42")
        .build()
        .unwrap();
    let error = client
        .batch(&[BatchCall {
            method: "taobao.time.get",
            params: vec![],
        }])
        .await
        .expect_err("nothing listens");
    assert!(matches!(error, Error::Transport(_)), "{error:?}");
    let mut chain = vec![error.to_string()];
    let mut cause = std::error::Error::source(&error);
    while let Some(e) = cause {
        chain.push(e.to_string());
        cause = e.source();
    }
    let chain = chain.join(": ");
    assert!(chain.starts_with("transport failure: "), "{chain}");
    for shown in [chain, format!("{error:?}")] {
        assert!(!shown.contains("SESSION-SECRET-42"), "{shown}");
        assert!(!shown.contains("sign="), "{shown}");
        assert!(shown.contains("127.0.0.1:1/router/batch"), "{shown}");
    }
}

/// A parameter named like one the client sets replaces it, and the answer is read as the
/// request asked for it: `simplify` or `format` slipped in among the parameters of a client that
/// asked for neither gives the real answer, not a misread one.
#[tokio::test]
async fn system_parameters_among_the_business_ones_are_read_as_sent() {
    let (url, _dir) = sandbox().await;
    let client = TopClient::builder(url, "test", "test").build().unwrap();
    let plain = client.call("taobao.time.get", []).await.unwrap();
    assert!(plain.body["time"].is_string(), "{}", plain.raw);
    let simplified = client
        .call("taobao.time.get", [("simplify", "true")])
        .await
        .unwrap();
    assert!(
        !simplified.raw.contains("time_get_response"),
        "{}",
        simplified.raw
    );
    assert!(simplified.body["time"].is_string(), "{}", simplified.raw);
    let xml = client
        .call("taobao.time.get", [("format", "xml")])
        .await
        .unwrap();
    assert!(xml.raw.starts_with("<?xml"), "{}", xml.raw);
    assert!(xml.body["time"].is_string(), "{}", xml.raw);
}
