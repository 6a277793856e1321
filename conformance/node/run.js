'use strict';
// Conformance cases for node-taobao-topclient (npm, pinned in package.json) against a running topgate.
//
// Env: TOPGATE_URL (full .../router/rest URL), TOPGATE_APP_KEY, TOPGATE_SECRET, TOPGATE_SESSION.
// Prints one JSON line per case: {"case": ..., "ok": bool, "detail": ...}; exits 0 iff all ok.
//
// Everything goes through the client's own code: request building (form body or query string),
// md5 signing, JSON.stringify of object params, and its response handling (`execute` resolves to
// body[<api>_response], rejects with a TOPClientError carrying `code` and `sub_code`).

// The client formats `timestamp` in the machine's local zone and TOP reads it as GMT+8, so the
// client only works on a machine set to China time (as its users' are). Pin that here, before
// the first Date is made, so the suite does not depend on the CI machine's zone.
process.env.TZ = 'Asia/Shanghai';

const TopClient = require('node-taobao-topclient').default;
const topUtil = require('node-taobao-topclient/lib/topUtil').default;
const clientVersion = require('node-taobao-topclient/package.json').version;

const URL = process.env.TOPGATE_URL;
const APP_KEY = process.env.TOPGATE_APP_KEY || 'test';
const SECRET = process.env.TOPGATE_SECRET || 'test';
const SESSION = process.env.TOPGATE_SESSION || 'test-session';
const CASE_TIMEOUT_MS = 20000;

if (!URL) {
  console.error('TOPGATE_URL is not set');
  process.exit(2);
}

function client(secret) {
  return new TopClient({ appkey: APP_KEY, appsecret: secret || SECRET, REST_URL: URL });
}

// The seed pages' request examples (supplier notify with real dates instead of the placeholder).
function supplierModel() {
  return {
    biz_type: '30',
    ext_info: '<"key", "value">',
    notify_type: '1',
    offer_invalid_date: '2019-09-09 12:33:00',
    offer_valid_date: '2018-09-09 12:33:00',
    order_no: '8888888',
    out_order_no: '88888888',
    receive_status: false,
    send_good_param: 'iccid=888|TB1,999|TB2;invalidDate=20180909$12:33|TB1,20180909$12:33|TB2',
    iccid: '888888888',
    user_id: '888888',
  };
}

function payDto() {
  return {
    extend: '{}',
    biz: '业务标识',
    amount: 100,
    phone_number: '18072887365',
    pay_time: 1661766890994,
    right_code: 'flowPacket',
    idempotent_id: '18072887365_11434434554',
    biz_scene: 'xx',
    title: '流量包',
    channel_id: 1234,
    source: '中国移动',
    outer_order_id: '1057706761588580000',
  };
}

function opentradeParam0() {
  return {
    sub_order_no: 212312,
    order_no: 12345678,
    success: true,
    result_code: '0000',
    result_desc: '订购成功',
    req_id: 'channel_1212312',
    ext: '{"firstChargeAmount":"100","firstChargeTime":"1704038400000"}',
  };
}

function check(cond, what) {
  if (!cond) {
    throw new Error(`check failed: ${what}`);
  }
}

// A success case: `execute` must resolve (not reject) to the *_response object.
function success(api, params, verify, type) {
  return async () => {
    const res = await client().execute(api, params, type);
    check(res !== null && typeof res === 'object', `execute resolved to the ${topUtil.getApiResponseName(api)} object (got ${JSON.stringify(res)})`);
    verify(res);
    return res;
  };
}

// An error case: `execute` must reject with the client's TOPClientError of this code.
function failure(run, code, subCodes) {
  return async () => {
    let res;
    try {
      res = await run();
    } catch (e) {
      check(e instanceof Error, `rejected with an Error (got ${JSON.stringify(e)})`);
      check(e.name === 'TOPClientError', `error name TOPClientError (got ${e.name}: ${e.message})`);
      check(e.code === code, `error code ${code} (got ${JSON.stringify(e.code)}: ${e.message})`);
      check(e.message.startsWith(`${e.data.error_response.msg}, code ${code}`), `message "<msg>, code ${code}..." (got ${e.message})`);
      if (subCodes) {
        check(subCodes.includes(e.sub_code), `sub_code one of ${subCodes} (got ${e.sub_code})`);
        check(e.message.includes(`; ${e.sub_code}: `), `message carries "; <sub_code>: <sub_msg>" (got ${e.message})`);
      }
      check(typeof e.data.error_response.request_id === 'string', 'error_response.request_id');
      return { message: e.message, code: e.code, sub_code: e.sub_code };
    }
    throw new Error(`expected a rejection with code ${code}, resolved to ${JSON.stringify(res)}`);
  };
}

const BAD_PARAM = ['isv.missing-parameter', 'isv.invalid-parameter'];

const cases = [
  ['lianbei.order.notice', success('alibaba.alisports.lianbei.order.notice', { biz_order_id: 1000 }, (r) => {
    check(r.result && r.result.alisp_code === 200, 'result.alisp_code === 200');
    check(r.result.alisp_data && r.result.alisp_data.biz_order_id !== undefined, 'result.alisp_data.biz_order_id present');
  })],
  ['supplier.notify', success('alibaba.base.order.supplier.notify', {
    param_flow_suppllier_notify_model: supplierModel(),
    session: SESSION,
  }, (r) => {
    check(r.result && r.result.success === true, 'result.success === true');
    check(r.result.model === true, 'result.model === true');
  })],
  ['pay.notify', success('alibaba.diantao.tripartite.right.pay.notify', { tripartite_pay_notify_dto: payDto() }, (r) => {
    check(r.succ === true, 'succ === true');
  })],
  ['opentrade.resultcallback', success('taobao.wt.trade.opentrade.resultcallback', {
    param0: opentradeParam0(),
    session: SESSION,
  }, (r) => {
    check(r.result && r.result.success === true, 'result.success === true');
    check(r.result.req_id === 'channel_1212312', 'result.req_id echoed');
  })],
  // The client's GET mode puts everything in the query string; identical payloads are replays.
  ['GET lianbei.order.notice', success('alibaba.alisports.lianbei.order.notice', { biz_order_id: 1000 }, (r) => {
    check(r.result && r.result.alisp_code === 200, 'result.alisp_code === 200');
  }, 'GET')],
  ['GET supplier.notify (replay)', success('alibaba.base.order.supplier.notify', {
    param_flow_suppllier_notify_model: supplierModel(),
    session: SESSION,
  }, (r) => {
    check(r.result && r.result.success === true, 'result.success === true');
  }, 'GET')],
  ['GET pay.notify (replay)', success('alibaba.diantao.tripartite.right.pay.notify', { tripartite_pay_notify_dto: payDto() }, (r) => {
    check(r.succ === true, 'succ === true');
  }, 'GET')],
  ['GET opentrade.resultcallback (replay)', success('taobao.wt.trade.opentrade.resultcallback', {
    param0: opentradeParam0(),
    session: SESSION,
  }, (r) => {
    check(r.result && r.result.success === true, 'result.success === true');
  }, 'GET')],
  ['invalid signature -> 25', failure(
    () => client('not-the-secret').execute('alibaba.alisports.lianbei.order.notice', { biz_order_id: 1000 }),
    25,
  )],
  ['unknown method -> 22', failure(
    () => client().execute('taobao.no.such.method', { foo: 'bar' }),
    22,
  )],
  ['pay.notify without source -> 50', failure(() => {
    const dto = payDto();
    delete dto.source;
    dto.idempotent_id = '18072887365_conformance_missing_source';
    dto.outer_order_id = '1057706761588580001';
    return client().execute('alibaba.diantao.tripartite.right.pay.notify', { tripartite_pay_notify_dto: dto });
  }, 50, BAD_PARAM)],
  ['supplier.notify without order_no -> 50', failure(() => {
    const model = supplierModel();
    delete model.order_no;
    return client().execute('alibaba.base.order.supplier.notify', {
      param_flow_suppllier_notify_model: model,
      session: SESSION,
    });
  }, 50, BAD_PARAM)],
  ['timestamp out of window -> 31', failure(async () => {
    // The client takes its timestamp from topUtil.YYYYMMDDHHmmss(); make its clock one hour slow.
    const original = topUtil.YYYYMMDDHHmmss;
    topUtil.YYYYMMDDHHmmss = (d, opts) => original(d || new Date(Date.now() - 3600 * 1000), opts);
    try {
      return await client().execute('alibaba.alisports.lianbei.order.notice', { biz_order_id: 1000 });
    } finally {
      topUtil.YYYYMMDDHHmmss = original;
    }
  }, 31)],
];

function withTimeout(promise, ms) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function describe(err) {
  if (err instanceof Error) {
    return `${err.name}: ${err.message}`;
  }
  return `rejected with ${JSON.stringify(err)}`;
}

async function main() {
  let failed = 0;
  for (const [name, run] of cases) {
    let line;
    try {
      const detail = await withTimeout(run(), CASE_TIMEOUT_MS);
      line = { case: name, ok: true, detail };
    } catch (err) {
      failed += 1;
      line = { case: name, ok: false, detail: describe(err) };
    }
    line.client = `node-taobao-topclient@${clientVersion}`;
    console.log(JSON.stringify(line));
  }
  process.exit(failed === 0 ? 0 : 1);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
