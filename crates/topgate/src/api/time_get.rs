//! `taobao.time.get`: the server's time in GMT+8, so any client can check connectivity and skew.

use top_protocol::registry::MethodSpec;
use top_protocol::{timestamp, Object};

use crate::gateway::{Call, HandlerFuture};

pub const SPEC: MethodSpec = MethodSpec {
    name: "taobao.time.get",
    params: &[],
    needs_session: false,
};

pub fn handle(call: Call) -> HandlerFuture {
    Box::pin(async move { Ok(Object::new().field("time", timestamp::format_wall_clock(call.now))) })
}
