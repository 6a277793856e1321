//! Typed requests and responses of the four APIs, field names and types as on their pages
//! (ids as `i64`, money as integer fen). Numbers and booleans deserialize from JSON values or
//! from the strings of an XML answer alike.

use serde::{Deserialize, Serialize};

use crate::lenient;

/// A typed TOP request.
pub trait TopRequest {
    /// The TOP method name.
    const METHOD: &'static str;
    /// Whether a user session is required.
    const NEEDS_SESSION: bool = false;
    type Response: for<'de> Deserialize<'de>;
    /// The business parameters as they travel (object parameters as JSON text).
    fn params(&self) -> Vec<(&'static str, String)>;
}

fn json_param<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

// ---- alibaba.base.order.supplier.notify ----

/// `FlowSuppllierNotifyModel` (the double *l* is part of the contract).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FlowSuppllierNotifyModel {
    pub biz_type: String,
    pub notify_type: String,
    pub order_no: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ext_info: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offer_invalid_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offer_valid_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_order_no: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receive_status: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_good_param: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iccid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SupplierNotifyRequest {
    pub param_flow_suppllier_notify_model: FlowSuppllierNotifyModel,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct CommonResult {
    pub code: String,
    pub desc: String,
    #[serde(deserialize_with = "lenient::boolean")]
    pub model: bool,
    #[serde(deserialize_with = "lenient::boolean")]
    pub success: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct SupplierNotifyResponse {
    pub result: CommonResult,
}

impl TopRequest for SupplierNotifyRequest {
    const METHOD: &'static str = "alibaba.base.order.supplier.notify";
    type Response = SupplierNotifyResponse;
    fn params(&self) -> Vec<(&'static str, String)> {
        vec![(
            "param_flow_suppllier_notify_model",
            json_param(&self.param_flow_suppllier_notify_model),
        )]
    }
}

// ---- alibaba.alisports.lianbei.order.notice ----

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LianbeiOrderNoticeRequest {
    pub biz_order_id: i64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct OrderNoticeDto {
    pub biz_order_id: String,
    pub gmt_create: Option<String>,
    pub pay_time: Option<String>,
    pub end_time: Option<String>,
    pub buyer_nick: String,
    #[serde(deserialize_with = "lenient::integer")]
    pub auction_id: i64,
    pub auction_title: String,
    pub auction_pic_url: String,
    #[serde(deserialize_with = "lenient::integer")]
    pub auction_price: i64,
    #[serde(deserialize_with = "lenient::integer")]
    pub buy_amount: i64,
    #[serde(deserialize_with = "lenient::integer")]
    pub discount_fee: i64,
    #[serde(deserialize_with = "lenient::integer")]
    pub tf: i64,
    pub mobile: String,
    pub source: String,
    #[serde(deserialize_with = "lenient::integer")]
    pub sku_id: i64,
    pub sku: String,
    #[serde(deserialize_with = "lenient::integer")]
    pub nego_price: i64,
    #[serde(deserialize_with = "lenient::integer")]
    pub status: i64,
    pub guider_id: String,
    pub guider_name: String,
    pub operator_id: String,
    pub operator_name: String,
    pub out_id: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct AlispResult {
    #[serde(deserialize_with = "lenient::integer")]
    pub alisp_code: i64,
    pub alisp_msg: Option<String>,
    pub alisp_data: Option<OrderNoticeDto>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct LianbeiOrderNoticeResponse {
    pub result: AlispResult,
}

impl TopRequest for LianbeiOrderNoticeRequest {
    const METHOD: &'static str = "alibaba.alisports.lianbei.order.notice";
    type Response = LianbeiOrderNoticeResponse;
    fn params(&self) -> Vec<(&'static str, String)> {
        vec![("biz_order_id", self.biz_order_id.to_string())]
    }
}

// ---- alibaba.diantao.tripartite.right.pay.notify ----

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TripartitePayNotifyDto {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extend: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub biz: Option<String>,
    /// Fen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    /// Epoch milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pay_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub right_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotent_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub biz_scene: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<i64>,
    pub source: String,
    pub outer_order_id: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RightPayNotifyRequest {
    pub tripartite_pay_notify_dto: TripartitePayNotifyDto,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TripartitePayNotifyRespDto {
    pub open_id: String,
    pub order_id: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct RightPayNotifyResponse {
    pub msg_info: Option<String>,
    pub msg_code: Option<String>,
    #[serde(deserialize_with = "lenient::boolean")]
    pub succ: bool,
    pub data: Option<TripartitePayNotifyRespDto>,
}

impl TopRequest for RightPayNotifyRequest {
    const METHOD: &'static str = "alibaba.diantao.tripartite.right.pay.notify";
    type Response = RightPayNotifyResponse;
    fn params(&self) -> Vec<(&'static str, String)> {
        vec![(
            "tripartite_pay_notify_dto",
            json_param(&self.tripartite_pay_notify_dto),
        )]
    }
}

// ---- taobao.wt.trade.opentrade.resultcallback ----

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OrderResultDto {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub_order_no: Option<i64>,
    pub order_no: i64,
    pub success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_desc: Option<String>,
    pub req_id: String,
    /// JSON object text, e.g. `{"firstChargeAmount":"100","firstChargeTime":"1704038400000"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ext: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpentradeResultCallbackRequest {
    pub param0: OrderResultDto,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct CommonRtnDo {
    #[serde(deserialize_with = "lenient::boolean")]
    pub success: bool,
    pub req_id: Option<String>,
    pub error_code: Option<String>,
    pub error_msg: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct OpentradeResultCallbackResponse {
    pub result: CommonRtnDo,
}

impl TopRequest for OpentradeResultCallbackRequest {
    const METHOD: &'static str = "taobao.wt.trade.opentrade.resultcallback";
    const NEEDS_SESSION: bool = true;
    type Response = OpentradeResultCallbackResponse;
    fn params(&self) -> Vec<(&'static str, String)> {
        vec![("param0", json_param(&self.param0))]
    }
}

// ---- taobao.time.get ----

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TimeGetRequest;

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TimeGetResponse {
    /// `yyyy-MM-dd HH:mm:ss`, GMT+8.
    pub time: String,
}

impl TopRequest for TimeGetRequest {
    const METHOD: &'static str = "taobao.time.get";
    type Response = TimeGetResponse;
    fn params(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}
