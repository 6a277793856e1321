//! What the SDK makes of answers that are no TOP gateway's, from a canned server standing in
//! for a proxy or a load balancer: a body that is no TOP envelope, or an `error_response`
//! without a code, is `Error::Malformed` naming the HTTP status and showing the start of the
//! body, for single calls and batches; an `error_response` is the TOP error whatever the status.
//! And an `https://` URL is spoken with TLS.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;

use top_protocol::Format;
use top_sdk::{BatchCall, Error, TopClient};

/// Starts a server answering every request with `status` (`502 Bad Gateway`), `content_type`
/// and `body`; returns its `/router/rest` URL.
fn answering(status: &'static str, content_type: &'static str, body: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    let url = format!("http://{}/router/rest", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            // The whole request is read first: answering before it would reset the connection.
            read_request(&stream);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

/// Reads one request's head and its `content-length` body.
fn read_request(stream: &TcpStream) {
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let _ = reader.read_exact(&mut vec![0; length]);
}

fn client(url: &str, format: Format, simplify: bool) -> TopClient {
    TopClient::builder(url, "test", "test")
        .format(format)
        .simplify(simplify)
        .build()
        .unwrap()
}

fn time_get() -> BatchCall<'static> {
    BatchCall {
        method: "taobao.time.get",
        params: vec![],
    }
}

/// The message of an `Error::Malformed`; panics on any other outcome.
fn malformed<T: std::fmt::Debug>(outcome: Result<T, Error>) -> String {
    match outcome {
        Err(error @ Error::Malformed(_)) => error.to_string(),
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_is_no_top_envelope_is_malformed_naming_its_status_and_body() {
    let upstream = r#"{"message":"upstream unavailable"}"#;
    let bad_gateway = answering("502 Bad Gateway", "application/json", upstream.into());
    // Simplified or not: a simplified success is any object, but never with a failure status.
    for simplify in [false, true] {
        let shown = malformed(
            client(&bad_gateway, Format::Json, simplify)
                .call("taobao.time.get", [])
                .await,
        );
        assert!(
            shown.starts_with("unreadable response: HTTP 502 Bad Gateway: not a TOP envelope"),
            "{shown}"
        );
        assert!(
            shown.ends_with(&format!("the body starts: {upstream}")),
            "{shown}"
        );
    }

    let page = "<?xml version=\"1.0\"?>\n<html xmlns=\"http://www.w3.org/1999/xhtml\">\
                <body><h1>503 Service Unavailable</h1></body></html>";
    let unavailable = answering("503 Service Unavailable", "text/html", page.into());
    let shown = malformed(
        client(&unavailable, Format::Xml, false)
            .call("taobao.time.get", [])
            .await,
    );
    assert!(
        shown.contains("HTTP 503 Service Unavailable: not a TOP envelope"),
        "{shown}"
    );
    // The page's line break is escaped, so the message stays on one line.
    assert!(shown.contains(r#"<?xml version="1.0"?>\n<html"#), "{shown}");

    // With status 200 the status goes unnamed; a batch's lone answer is the batch's error.
    let ok = answering("200 OK", "application/json", r#"{"status":"ok"}"#.into());
    let shown = malformed(
        client(&ok, Format::Json, false)
            .call("taobao.time.get", [])
            .await,
    );
    assert_eq!(
        shown,
        "unreadable response: not a TOP envelope: the root is not one `…_response` member \
         holding an object; the body starts: {\"status\":\"ok\"}"
    );
    for calls in [1, 2] {
        let batch = client(&ok, Format::Json, false)
            .batch(&vec![time_get(); calls])
            .await;
        malformed(batch);
    }

    // A success envelope with a failure status is no success either.
    let wrapped = r#"{"time_get_response":{"time":"2024-01-01 00:00:00","request_id":"r1"}}"#;
    let proxied = answering(
        "500 Internal Server Error",
        "application/json",
        wrapped.into(),
    );
    let shown = malformed(
        client(&proxied, Format::Json, false)
            .call("taobao.time.get", [])
            .await,
    );
    assert!(shown.contains("HTTP 500 Internal Server Error"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_response_is_the_top_error_whatever_the_status_but_only_with_a_code() {
    let refused = r#"{"error_response":{"code":7,"msg":"App Call Limited","request_id":"r7"}}"#;
    let throttled = answering("429 Too Many Requests", "application/json", refused.into());
    for simplify in [false, true] {
        let error = client(&throttled, Format::Json, simplify)
            .call("taobao.time.get", [])
            .await
            .unwrap_err();
        assert_eq!(error.top().map(|e| e.code), Some(7), "{error:?}");
    }

    for (format, body) in [
        (Format::Json, r#"{"error_response":"text"}"#),
        (Format::Json, r#"{"error_response":{"msg":"no code"}}"#),
        (
            Format::Json,
            r#"{"error_response":{"code":0,"msg":"zero"}}"#,
        ),
        (
            Format::Json,
            r#"{"error_response":{"code":"x15","msg":"not a number"}}"#,
        ),
        (Format::Xml, "<error_response>text</error_response>"),
        (
            Format::Xml,
            "<error_response><msg>no code</msg></error_response>",
        ),
    ] {
        let url = answering("200 OK", "text/plain", body.into());
        for simplify in [false, true] {
            let shown = malformed(
                client(&url, format, simplify)
                    .call("taobao.time.get", [])
                    .await,
            );
            assert!(
                shown.contains("error_response without a non-zero integer code"),
                "{body}: {shown}"
            );
        }
        malformed(client(&url, format, false).batch(&[time_get()]).await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_refused_with_a_failure_status_shows_the_start_of_the_body() {
    let page = format!("<html><body>{}</body></html>", "x".repeat(300));
    let url = answering("502 Bad Gateway", "text/html", page.clone());
    let shown = malformed(
        client(&url, Format::Json, false)
            .batch(&[time_get(), time_get()])
            .await,
    );
    let start: String = page.chars().take(200).collect();
    assert!(shown.contains("HTTP 502 Bad Gateway: not JSON"), "{shown}");
    assert!(
        shown.ends_with(&format!("the body starts: {start}…")),
        "{shown}"
    );
}

#[tokio::test]
async fn an_https_url_is_spoken_with_tls() {
    // A plain TCP listener: it records the first bytes the client sends, then answers plain
    // HTTP, which no TLS client accepts.
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds");
    let port = listener.local_addr().unwrap().port();
    let (first_bytes, received) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("a connection");
        let mut head = [0u8; 3];
        let _ = stream.read_exact(&mut head);
        let _ = first_bytes.send(head);
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
    });
    let client = TopClient::builder(format!("https://127.0.0.1:{port}/router/rest"), "k", "s")
        .build()
        .unwrap();
    let error = client.call("taobao.time.get", []).await.unwrap_err();
    let mut chain = vec![error.to_string()];
    let mut cause = std::error::Error::source(&error);
    while let Some(e) = cause {
        chain.push(e.to_string());
        cause = e.source();
    }
    let chain = chain.join(": ");
    assert!(matches!(error, Error::Transport(_)), "{chain}");
    assert!(!chain.contains("scheme"), "{chain}");
    // A TLS record of type 22 (handshake), protocol major version 3: a ClientHello.
    let head = received.recv().expect("the client connected");
    assert_eq!(head[..2], [0x16, 0x03], "{chain}");
}
