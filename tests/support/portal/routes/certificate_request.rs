//! `SoftLayer_Security_Certificate_Request` (§1): the SSL orders, their status, and
//! `resendEmail`.

use std::time::SystemTime;

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::{
    Answer, ApiError, Call, Order, Resend, STATUSES, State, expect_parameters, integer_parameter,
    list_answer, needs_id, portal_date, string_parameter, unknown_method, without_nulls,
};

/// What a refusing order answers to `resendEmail`. CHOICE: the exact text (and class) the
/// real API gives for orders of the retired product (§0) is not documented anywhere.
pub const ORDERS_RETIRED_MESSAGE: &str = "SSL certificate orders are no longer supported.";

pub(super) fn status_json(status_id: i64) -> Value {
    match STATUSES.iter().find(|s| s.0 == status_id) {
        Some((id, name, description)) => {
            json!({"id": id, "name": name, "description": description})
        }
        None => json!({"id": status_id}),
    }
}

fn order_json(order: &Order) -> Value {
    without_nulls(json!({
        "id": order.id,
        "accountId": order.account_id,
        "commonName": order.common_name,
        "certificateSigningRequest": order.csr_pem,
        "approverEmailAddress": order.approver_email,
        "technicalContactEmailAddress": order.technical_contact_email,
        "statusId": order.status_id,
        "status": status_json(order.status_id),
        "createDate": portal_date(order.create_date),
        "modifyDate": portal_date(order.modify_date),
        "effectiveDate": order.effective_date.map(portal_date),
        "expirationDate": order.expiration_date.map(portal_date),
        "order": {"id": order.billing_order_id},
    }))
}

/// The caller's order `id` (another account's order is not found, as it is not theirs).
fn own_order(state: &State, call: &Call) -> Result<i64, ApiError> {
    let id = call.id.ok_or_else(|| needs_id(call))?;
    match state.orders.get(&id) {
        Some(order) if order.account_id == state.account.id => Ok(id),
        _ => Err(ApiError::not_found(id)),
    }
}

pub(super) fn call(
    state: &mut State,
    call: &Call,
    now: OffsetDateTime,
) -> Result<Answer, ApiError> {
    match call.method.as_str() {
        "getObject" => {
            let id = own_order(state, call)?;
            expect_parameters(call, 0)?;
            Ok(Answer::value(order_json(&state.orders[&id])))
        }
        "getStatus" => {
            let id = own_order(state, call)?;
            expect_parameters(call, 0)?;
            Ok(Answer::value(status_json(state.orders[&id].status_id)))
        }
        "getSslCertificateRequests" => {
            // No init parameter (§1.1); the account id is the one parameter.
            expect_parameters(call, 1)?;
            let account_id = integer_parameter(call, 0, "accountId")?;
            if account_id != state.account.id {
                // CHOICE: the answer for another account's id is undocumented; SLDN's
                // generic "Access Denied. " (§3.5) is used.
                return Err(ApiError::public("Access Denied. "));
            }
            let items: Vec<Value> = state
                .orders
                .values()
                .filter(|o| o.account_id == account_id)
                .map(order_json)
                .collect();
            // CHOICE (§6 item 6): the filter starts at the request's own properties,
            // e.g. {"commonName":{"operation":"example.com"}}.
            list_answer(items, call.query.filter.as_ref(), call.query.limit)
        }
        "resendEmail" => {
            let id = own_order(state, call)?;
            expect_parameters(call, 1)?;
            let email_type = string_parameter(call, 0, "emailType")?.to_string();
            // §1.2: "Valid email types are: ApproverEmail, FulfillmentEmail". CHOICE: case
            // sensitivity is undocumented; exact strings only.
            if email_type != "FulfillmentEmail" && email_type != "ApproverEmail" {
                return Err(ApiError::invalid_value(format!(
                    "Invalid email type '{email_type}'. Valid email types are: ApproverEmail, FulfillmentEmail"
                )));
            }
            if state.orders[&id].refuses_resend {
                // CHOICE: text and class undocumented (§0, §6 item 2).
                return Err(ApiError::public(ORDERS_RETIRED_MESSAGE));
            }
            // CHOICE: the order's status does not matter (undocumented).
            state.resends.push(Resend {
                order_id: id,
                email_type: email_type.clone(),
                at: SystemTime::from(now),
            });
            let mut answer = Answer::value(Value::Bool(true));
            if email_type == "FulfillmentEmail" {
                answer.resend_hook = Some(id);
            }
            Ok(answer)
        }
        other => Err(unknown_method(other)),
    }
}
