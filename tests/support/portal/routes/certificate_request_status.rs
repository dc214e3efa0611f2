//! `SoftLayer_Security_Certificate_Request_Status` (§1.5): the fixed list of order statuses.

use super::certificate_request::status_json;
use serde_json::Value;

use super::{
    Answer, ApiError, Call, STATUSES, expect_parameters, list_answer, needs_id, unknown_method,
};

pub(super) fn call(call: &Call) -> Result<Answer, ApiError> {
    match call.method.as_str() {
        "getSslRequestStatuses" => {
            expect_parameters(call, 0)?;
            let items: Vec<Value> = STATUSES.iter().map(|s| status_json(s.0)).collect();
            list_answer(items, call.query.filter.as_ref(), call.query.limit)
        }
        "getObject" => {
            let id = call.id.ok_or_else(|| needs_id(call))?;
            expect_parameters(call, 0)?;
            if status_id_known(id) {
                Ok(Answer::value(status_json(id)))
            } else {
                Err(ApiError::not_found(id))
            }
        }
        other => Err(unknown_method(other)),
    }
}

fn status_id_known(id: i64) -> bool {
    STATUSES.iter().any(|s| s.0 == id)
}
