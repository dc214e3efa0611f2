//! The services the portal serves, one module each, and what they share: the decoded
//! [`Call`], its [`Answer`], parameter checks and the API's date format.

mod account;
mod certificate;
mod certificate_request;
mod certificate_request_status;
mod lbaas;

use serde_json::{Map, Value};
use time::{OffsetDateTime, UtcOffset};

use super::error::ApiError;
use super::lists::list_answer;
use super::store::{Order, Resend, STATUSES, State, StoredCertificate};
use super::url::Query;

pub(crate) use certificate::create_certificate;
pub use certificate_request::ORDERS_RETIRED_MESSAGE;

/// The portal's own time zone for dates (the API's examples carry `-06:00`, §1.4).
const PORTAL_OFFSET: UtcOffset = time::macros::offset!(-6);

/// A decoded call.
pub(crate) struct Call {
    pub(crate) service: String,
    pub(crate) id: Option<i64>,
    pub(crate) method: String,
    pub(crate) parameters: Vec<Value>,
    pub(crate) query: Query,
}

impl Call {
    fn name(&self) -> String {
        format!("{}::{}", self.service, self.method)
    }
}

/// A successful answer.
pub(crate) struct Answer {
    pub(crate) value: Value,
    pub(crate) total_items: Option<usize>,
    /// Order id to pass to the resend hook once the state lock is released.
    pub(crate) resend_hook: Option<i64>,
}

impl Answer {
    fn value(value: Value) -> Answer {
        Answer {
            value,
            total_items: None,
            resend_hook: None,
        }
    }
}

/// Methods of the services below that exist in the real API (§1.1, §2.1) but are not
/// implemented here.
const UNIMPLEMENTED: &[(&str, &[&str])] = &[
    (
        "SoftLayer_Security_Certificate_Request",
        &[
            "cancelSslOrder",
            "getAccount",
            "getAdministratorEmailDomains",
            "getAdministratorEmailPrefixes",
            "getOrder",
            "getOrderItem",
            "getPreviousOrderData",
            "validateCsr",
        ],
    ),
    ("SoftLayer_Account", &["getValidSecurityCertificateEntries"]),
    (
        "SoftLayer_Network_LBaaS_LoadBalancer",
        &[
            "cancelLoadBalancer",
            "getListenerTimeSeriesData",
            "getLoadBalancerMemberHealth",
            "getLoadBalancerStatistics",
            "updateLoadBalancer",
            "updateSslCiphers",
        ],
    ),
    (
        "SoftLayer_Network_LBaaS_Listener",
        &[
            "deleteLoadBalancerProtocols",
            "getObject",
            "getL7Policies",
            "getDefaultPool",
        ],
    ),
];

pub(crate) fn dispatch(
    state: &mut State,
    call: &Call,
    now: OffsetDateTime,
) -> Result<Answer, ApiError> {
    let service = call.service.as_str();
    let method = call.method.as_str();
    match service {
        "SoftLayer_Account" => account::call(state, call, now),
        "SoftLayer_Security_Certificate_Request" => certificate_request::call(state, call, now),
        "SoftLayer_Security_Certificate_Request_Status" => certificate_request_status::call(call),
        "SoftLayer_Security_Certificate" => certificate::call(state, call, now),
        "SoftLayer_Network_LBaaS_LoadBalancer" => lbaas::load_balancer_call(state, call, now),
        "SoftLayer_Network_LBaaS_Listener" => lbaas::listener_call(state, call, now),
        _ => Err(ApiError::no_service()),
    }
    .map_err(|error| {
        let unknown =
            error.code == "SoftLayer_Exception_Public" && error.message.starts_with("Function (");
        let real = UNIMPLEMENTED
            .iter()
            .any(|(s, methods)| *s == service && methods.contains(&method));
        if unknown && real {
            ApiError::not_implemented(service, method)
        } else {
            error
        }
    })
}

/// §3.5: `Function ("x") is not a valid method for this service.`
fn unknown_method(method: &str) -> ApiError {
    ApiError::public(format!(
        "Function (\"{method}\") is not a valid method for this service."
    ))
}

/// A method that needs an init parameter called without one. CHOICE: the message is the
/// one the API gives over XML-RPC (softlayer-python#564); class and status over REST are
/// not documented.
fn needs_id(call: &Call) -> ApiError {
    ApiError::new(
        500,
        "SoftLayer_Exception",
        format!(
            "Object does not exist to execute method on. ({})",
            call.name()
        ),
    )
}

/// CHOICE: the real message for a wrong parameter count is not documented; too few and
/// too many are both refused.
fn expect_parameters(call: &Call, count: usize) -> Result<(), ApiError> {
    if call.parameters.len() == count {
        Ok(())
    } else {
        Err(ApiError::public(format!(
            "{} expects {count} parameter(s), {} given.",
            call.name(),
            call.parameters.len()
        )))
    }
}

fn integer_parameter(call: &Call, index: usize, name: &str) -> Result<i64, ApiError> {
    let value = &call.parameters[index];
    let parsed = match value {
        Value::Number(n) => n.as_i64(),
        // Parameters in the URL are strings; the API takes numeric strings for integers.
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| {
        ApiError::invalid_value(format!(
            "Invalid value for parameter '{name}' of {}: expected an integer, got {value}.",
            call.name()
        ))
    })
}

fn string_parameter<'c>(call: &'c Call, index: usize, name: &str) -> Result<&'c str, ApiError> {
    match &call.parameters[index] {
        Value::String(s) => Ok(s),
        other => Err(ApiError::invalid_value(format!(
            "Invalid value for parameter '{name}' of {}: expected a string, got {other}.",
            call.name()
        ))),
    }
}

fn object_parameter<'c>(
    call: &'c Call,
    index: usize,
    datatype: &str,
) -> Result<&'c Map<String, Value>, ApiError> {
    match &call.parameters[index] {
        Value::Object(object) => Ok(object),
        other => Err(ApiError::invalid_value(format!(
            "Invalid value for parameter 'templateObject' of {}: expected a {datatype}, got {other}.",
            call.name()
        ))),
    }
}

fn portal_date(t: OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory]:[offset_minute]"
    );
    t.to_offset(PORTAL_OFFSET)
        .format(&format)
        .unwrap_or_default()
}

/// An object without its null properties: the API leaves unset properties out.
fn without_nulls(mut value: Value) -> Value {
    if let Value::Object(object) = &mut value {
        object.retain(|_, v| !v.is_null());
    }
    value
}
