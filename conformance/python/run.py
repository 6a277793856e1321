"""Conformance cases for py-taobao-open (PyPI, pinned in PINNED_VERSION) against a running topgate.

Env: TOPGATE_URL (full http://HOST:PORT/router/rest URL), TOPGATE_APP_KEY, TOPGATE_SECRET,
TOPGATE_SESSION. The SDK must be importable (the runner puts conformance/python/.vendor on
PYTHONPATH). Prints one JSON line per case: {"case": ..., "ok": bool, "detail": ...}; exits 0 iff
all are ok.

Everything goes through the SDK's own code: `RestApi.getResponse` builds the request (system
parameters in the query string, business parameters form-encoded in the body, epoch-millisecond
timestamp), signs it with md5, requires HTTP 200, parses the JSON and raises
`taobao_open.api.base.TopException` (errorcode/message/subcode/submsg) on an `error_response`.
The SDK ships request classes only for a few taobao.tbk/baichuan APIs, so the four APIs get the
same kind of small `RestApi` subclass the SDK generates for every API.
"""

import json
import os
import sys
import time
import urllib.parse
from importlib import metadata
from unittest import mock

import taobao_open
from taobao_open.api import base

PINNED_VERSION = "1.0.3"  # as requirements.txt
TIMEOUT_S = 20

URL = os.environ.get("TOPGATE_URL")
APP_KEY = os.environ.get("TOPGATE_APP_KEY", "test")
SECRET = os.environ.get("TOPGATE_SECRET", "test")
SESSION = os.environ.get("TOPGATE_SESSION", "test-session")

if not URL:
    print("TOPGATE_URL is not set", file=sys.stderr)
    sys.exit(2)

# The SDK takes a domain and a port and always requests /router/rest.
_parsed = urllib.parse.urlsplit(URL)
HOST = _parsed.hostname
PORT = _parsed.port or 80


# --- request classes, as the SDK's generator writes them ------------------------------------------


class AlibabaAlisportsLianbeiOrderNoticeRequest(base.RestApi):
    def __init__(self, domain="gw.api.taobao.com", port=80):
        base.RestApi.__init__(self, domain, port)
        self.biz_order_id = None

    def getapiname(self):
        return "alibaba.alisports.lianbei.order.notice"


class AlibabaBaseOrderSupplierNotifyRequest(base.RestApi):
    def __init__(self, domain="gw.api.taobao.com", port=80):
        base.RestApi.__init__(self, domain, port)
        self.param_flow_suppllier_notify_model = None

    def getapiname(self):
        return "alibaba.base.order.supplier.notify"


class AlibabaDiantaoTripartiteRightPayNotifyRequest(base.RestApi):
    def __init__(self, domain="gw.api.taobao.com", port=80):
        base.RestApi.__init__(self, domain, port)
        self.tripartite_pay_notify_dto = None

    def getapiname(self):
        return "alibaba.diantao.tripartite.right.pay.notify"


class WtTradeOpentradeResultcallbackRequest(base.RestApi):
    def __init__(self, domain="gw.api.taobao.com", port=80):
        base.RestApi.__init__(self, domain, port)
        self.param0 = None

    def getapiname(self):
        return "taobao.wt.trade.opentrade.resultcallback"


class UnknownMethodRequest(base.RestApi):
    def __init__(self, domain="gw.api.taobao.com", port=80):
        base.RestApi.__init__(self, domain, port)
        self.foo = None

    def getapiname(self):
        return "taobao.no.such.method"


def make(cls, secret=None):
    req = cls(HOST, PORT)
    req.set_app_info(taobao_open.appinfo(APP_KEY, secret or SECRET))
    return req


def obj(value):
    """Object parameters travel as JSON text (the SDK sends whatever str() gives)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# --- the seed pages' request examples -------------------------------------------------------------


def supplier_model():
    return {
        "biz_type": "30",
        "ext_info": '<"key", "value">',
        "notify_type": "1",
        "offer_invalid_date": "2019-09-09 12:33:00",
        "offer_valid_date": "2018-09-09 12:33:00",
        "order_no": "8888888",
        "out_order_no": "88888888",
        "receive_status": False,
        "send_good_param": "iccid=888|TB1,999|TB2;invalidDate=20180909$12:33|TB1,20180909$12:33|TB2",
        "iccid": "888888888",
        "user_id": "888888",
    }


def pay_dto():
    return {
        "extend": "{}",
        "biz": "业务标识",
        "amount": 100,
        "phone_number": "18072887365",
        "pay_time": 1661766890994,
        "right_code": "flowPacket",
        "idempotent_id": "18072887365_11434434554",
        "biz_scene": "xx",
        "title": "流量包",
        "channel_id": 1234,
        "source": "中国移动",
        "outer_order_id": "1057706761588580000",
    }


def opentrade_param0():
    return {
        "sub_order_no": 212312,
        "order_no": 12345678,
        "success": True,
        "result_code": "0000",
        "result_desc": "订购成功",
        "req_id": "channel_1212312",
        "ext": '{"firstChargeAmount":"100","firstChargeTime":"1704038400000"}',
    }


def lianbei_req(secret=None):
    req = make(AlibabaAlisportsLianbeiOrderNoticeRequest, secret)
    req.biz_order_id = 1000
    return req


def supplier_req(model):
    req = make(AlibabaBaseOrderSupplierNotifyRequest)
    req.param_flow_suppllier_notify_model = obj(model)
    return req


def pay_req(dto):
    req = make(AlibabaDiantaoTripartiteRightPayNotifyRequest)
    req.tripartite_pay_notify_dto = obj(dto)
    return req


def pay_req_raw(text):
    req = make(AlibabaDiantaoTripartiteRightPayNotifyRequest)
    req.tripartite_pay_notify_dto = text
    return req


def opentrade_req(param0):
    req = make(WtTradeOpentradeResultcallbackRequest)
    req.param0 = obj(param0)
    return req


# --- checks ----------------------------------------------------------------------------------------


class CheckFailed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CheckFailed("check failed: " + what)


def success(req, response_name, verify, session=None):
    """The SDK returns the whole document; the caller indexes the *_response key."""

    def run():
        doc = req.getResponse(session, TIMEOUT_S)
        check(isinstance(doc, dict), "getResponse returned a dict (got %r)" % (doc,))
        check(response_name in doc, "document has key %s (got %s)" % (response_name, list(doc)))
        check(len(doc) == 1, "document has exactly one key (got %s)" % list(doc))
        res = doc[response_name]
        verify(res)
        return res

    return run


BAD_PARAM = ("isv.missing-parameter", "isv.invalid-parameter")


def failure(send, code, sub_codes=None):
    """The SDK must raise its TopException with this errorcode."""

    def run():
        try:
            doc = send()
        except base.TopException as e:
            check(e.errorcode == code, "errorcode %d (got %r: %s)" % (code, e.errorcode, e))
            check(isinstance(e.errorcode, int), "errorcode is a JSON number (got %r)" % (e.errorcode,))
            check(bool(e.message), "message present (got %r)" % (e.message,))
            if sub_codes:
                check(e.subcode in sub_codes, "subcode one of %s (got %r)" % (sub_codes, e.subcode))
                check(bool(e.submsg), "submsg present (got %r)" % (e.submsg,))
            return {"str": str(e), "errorcode": e.errorcode, "message": e.message,
                    "subcode": e.subcode, "submsg": e.submsg}
        raise CheckFailed("expected TopException with errorcode %d, got %r" % (code, doc))

    return run


def out_of_window():
    # The SDK stamps str(int(time.time() * 1000)); make its clock one hour slow.
    real = time.time
    with mock.patch.object(base.time, "time", lambda: real() - 3600):
        return lianbei_req().getResponse(None, TIMEOUT_S)


def without(d, key, **changes):
    d = dict(d)
    del d[key]
    d.update(changes)
    return d


def verify_lianbei(r):
    check(r["result"]["alisp_code"] == 200, "result.alisp_code == 200")
    check("biz_order_id" in r["result"]["alisp_data"], "result.alisp_data.biz_order_id present")


def verify_supplier(r):
    check(r["result"]["success"] is True, "result.success is True")
    check(r["result"]["model"] is True, "result.model is True")


def verify_pay(r):
    check(r["succ"] is True, "succ is True")


def verify_opentrade(r):
    check(r["result"]["success"] is True, "result.success is True")
    check(r["result"]["req_id"] == "channel_1212312", "result.req_id echoed")


CASES = [
    ("lianbei.order.notice",
     success(lianbei_req(), "alibaba_alisports_lianbei_order_notice_response", verify_lianbei)),
    ("supplier.notify",
     success(supplier_req(supplier_model()), "alibaba_base_order_supplier_notify_response",
             verify_supplier, session=SESSION)),
    ("pay.notify",
     success(pay_req(pay_dto()), "alibaba_diantao_tripartite_right_pay_notify_response", verify_pay)),
    ("opentrade.resultcallback",
     success(opentrade_req(opentrade_param0()), "wt_trade_opentrade_resultcallback_response",
             verify_opentrade, session=SESSION)),
    # What most callers write: json.dumps with its defaults (\uXXXX escapes, ", " separators).
    # Same idempotent_id and same content as above, so an idempotent replay.
    ("pay.notify, json.dumps defaults (replay)",
     success(pay_req_raw(json.dumps(pay_dto())),
             "alibaba_diantao_tripartite_right_pay_notify_response", verify_pay)),
    ("invalid signature -> 25",
     failure(lambda: lianbei_req("not-the-secret").getResponse(None, TIMEOUT_S), 25)),
    ("unknown method -> 22",
     failure(lambda: make(UnknownMethodRequest).getResponse(None, TIMEOUT_S), 22)),
    ("pay.notify without source -> 50",
     failure(lambda: pay_req(without(pay_dto(), "source",
                                     idempotent_id="18072887365_conformance_missing_source",
                                     outer_order_id="1057706761588580001")).getResponse(None, TIMEOUT_S),
             50, BAD_PARAM)),
    ("supplier.notify without order_no -> 50",
     failure(lambda: supplier_req(without(supplier_model(), "order_no")).getResponse(SESSION, TIMEOUT_S),
             50, BAD_PARAM)),
    ("timestamp out of window -> 31", failure(out_of_window, 31)),
]


def main():
    try:
        version = metadata.version("py-taobao-open")
    except metadata.PackageNotFoundError:
        version = "unknown"
    client = "py-taobao-open@" + version
    failed = 0
    if version != PINNED_VERSION:
        failed += 1
        print(json.dumps({"case": "pinned version", "ok": False, "client": client,
                          "detail": "expected py-taobao-open %s" % PINNED_VERSION}, ensure_ascii=False))
    for name, run in CASES:
        try:
            line = {"case": name, "ok": True, "detail": run()}
        except Exception as e:  # noqa: BLE001 - every failure becomes a reported case
            failed += 1
            line = {"case": name, "ok": False, "detail": "%s: %s" % (type(e).__name__, e)}
        line["client"] = client
        print(json.dumps(line, ensure_ascii=False), flush=True)
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
