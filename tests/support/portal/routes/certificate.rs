//! `SoftLayer_Security_Certificate` (§2): the certificate store. Uploads are judged by
//! [`judge`](super::super::judge) before they are stored.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::super::judge::check_certificate;
use super::{
    Answer, ApiError, Call, State, StoredCertificate, expect_parameters, list_answer, needs_id,
    object_parameter, portal_date, string_parameter, unknown_method, without_nulls,
};

pub(super) fn certificate_json(
    c: &StoredCertificate,
    with_private_key: bool,
    now: OffsetDateTime,
) -> Value {
    without_nulls(json!({
        "id": c.id,
        "commonName": c.common_name,
        "organizationName": c.organization_name,
        "validityBegin": portal_date(c.validity_begin),
        "validityEnd": portal_date(c.validity_end),
        "validityDays": (c.validity_end - now).whole_days().max(0),
        "certificate": c.certificate,
        "intermediateCertificate": c.intermediate_certificate,
        "certificateSigningRequest": c.certificate_signing_request,
        "notes": c.notes,
        "createDate": portal_date(c.create_date),
        "modifyDate": portal_date(c.modify_date),
        "keySize": c.key_size,
        "privateKey": with_private_key.then_some(&c.private_key),
    }))
}

fn own_certificate(state: &State, call: &Call) -> Result<i64, ApiError> {
    let id = call.id.ok_or_else(|| needs_id(call))?;
    if state.certificates.contains_key(&id) {
        Ok(id)
    } else {
        Err(ApiError::not_found(id))
    }
}

pub(super) fn call(
    state: &mut State,
    call: &Call,
    now: OffsetDateTime,
) -> Result<Answer, ApiError> {
    match call.method.as_str() {
        "getObject" => {
            let id = own_certificate(state, call)?;
            expect_parameters(call, 0)?;
            Ok(Answer::value(certificate_json(
                &state.certificates[&id],
                true,
                now,
            )))
        }
        "createObject" => {
            expect_parameters(call, 1)?;
            let template = object_parameter(call, 0, "SoftLayer_Security_Certificate")?;
            let created = create_certificate(state, template, now)?;
            Ok(Answer::value(certificate_json(&created, false, now)))
        }
        "findByCommonName" => {
            expect_parameters(call, 1)?;
            let name = string_parameter(call, 0, "commonName")?;
            // CHOICE: exact, case-sensitive match (undocumented).
            let items: Vec<Value> = state
                .certificates
                .values()
                .filter(|c| c.common_name == name)
                .map(|c| certificate_json(c, false, now))
                .collect();
            list_answer(items, call.query.filter.as_ref(), call.query.limit)
        }
        "deleteObject" => {
            let id = own_certificate(state, call)?;
            expect_parameters(call, 0)?;
            if !state.listeners_using(id).is_empty() {
                // SLDN: "You may not remove a certificate with associated services." (§7.1)
                // CHOICE: the exception class and this exact message.
                return Err(ApiError::public(
                    "You may not remove a certificate with associated services.",
                ));
            }
            state.certificates.remove(&id);
            Ok(Answer::value(Value::Bool(true)))
        }
        "editObject" => {
            let id = own_certificate(state, call)?;
            expect_parameters(call, 1)?;
            let template = object_parameter(call, 0, "SoftLayer_Security_Certificate")?;
            edit_certificate(state, id, template, now)?;
            Ok(Answer::value(Value::Bool(true)))
        }
        "getPemFormat" => {
            let id = own_certificate(state, call)?;
            expect_parameters(call, 0)?;
            let c = &state.certificates[&id];
            let mut pem = c.certificate.trim_end().to_string();
            if let Some(chain) = c
                .intermediate_certificate
                .as_deref()
                .filter(|s| !s.trim().is_empty())
            {
                pem.push('\n');
                pem.push_str(chain.trim_end());
            }
            pem.push('\n');
            Ok(Answer::value(Value::String(pem)))
        }
        // The local portal's only services are LBaaS listeners (§7.1).
        "getAssociatedServiceCount" | "getLbaasListenerCount" => {
            let id = own_certificate(state, call)?;
            Ok(Answer::value(json!(state.listeners_using(id).len())))
        }
        "getLoadBalancerVirtualIpAddressCount" => {
            own_certificate(state, call)?;
            Ok(Answer::value(json!(0)))
        }
        "getLbaasListeners" => {
            let id = own_certificate(state, call)?;
            expect_parameters(call, 0)?;
            let items = (state.listeners_using(id).into_iter())
                .map(|l| super::lbaas::listener_json(l, now))
                .collect();
            list_answer(items, None, call.query.limit)
        }
        "getLoadBalancerVirtualIpAddresses" => {
            own_certificate(state, call)?;
            list_answer(Vec::new(), None, call.query.limit)
        }
        other => Err(unknown_method(other)),
    }
}

/// An optional string field of a template: absent, null and "" are all "not given".
fn optional_string(template: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match template.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ApiError::invalid_value(format!(
            "Invalid value for property '{name}' of SoftLayer_Security_Certificate: expected a string, got {other}."
        ))),
    }
}

/// A required string field. The message follows the API's MissingCreationProperty text
/// (softlayer-python#885).
fn required_string(template: &Map<String, Value>, name: &str) -> Result<String, ApiError> {
    optional_string(template, name)?.ok_or_else(|| {
        ApiError::new(
            500,
            "SoftLayer_Exception_MissingCreationProperty",
            format!("The property '{name}' must be set to create an instance of 'SoftLayer_Security_Certificate'."),
        )
    })
}

pub(crate) fn create_certificate(
    state: &mut State,
    template: &Map<String, Value>,
    now: OffsetDateTime,
) -> Result<StoredCertificate, ApiError> {
    let certificate = required_string(template, "certificate")?;
    // §2.3: "usually required"; every official client requires it, and so does this portal.
    let private_key = required_string(template, "privateKey")?;
    let intermediate = optional_string(template, "intermediateCertificate")?;
    let csr = optional_string(template, "certificateSigningRequest")?;
    let notes = optional_string(template, "notes")?;
    let checked = check_certificate(
        &certificate,
        &private_key,
        intermediate.as_deref(),
        csr.as_deref(),
    )?;
    // commonName, organizationName and the validity dates are extracted; values sent for
    // them are "silently ignored" (§2.2), as is anything else in the template.
    let id = state.next_certificate_id;
    state.next_certificate_id += 1;
    let stored = StoredCertificate {
        id,
        common_name: checked.common_name,
        organization_name: checked.organization_name,
        certificate,
        private_key,
        intermediate_certificate: intermediate,
        certificate_signing_request: csr,
        notes,
        validity_begin: checked.validity_begin,
        validity_end: checked.validity_end,
        key_size: checked.key_size,
        create_date: now,
        modify_date: now,
        sha256: checked.sha256,
    };
    state.certificates.insert(id, stored.clone());
    Ok(stored)
}

/// `editObject` (§2.1): only the properties sent change; with no associated services in
/// the local portal, every writable property may change, and the result is re-checked.
fn edit_certificate(
    state: &mut State,
    id: i64,
    template: &Map<String, Value>,
    now: OffsetDateTime,
) -> Result<(), ApiError> {
    let current = state.certificates[&id].clone();
    let pick = |name: &str, old: Option<String>| -> Result<Option<String>, ApiError> {
        if template.contains_key(name) {
            optional_string(template, name)
        } else {
            Ok(old)
        }
    };
    let certificate = pick("certificate", Some(current.certificate.clone()))?
        .ok_or_else(|| ApiError::public("The certificate cannot be removed."))?;
    let private_key = pick("privateKey", Some(current.private_key.clone()))?
        .ok_or_else(|| ApiError::public("The private key cannot be removed."))?;
    let intermediate = pick(
        "intermediateCertificate",
        current.intermediate_certificate.clone(),
    )?;
    let csr = pick(
        "certificateSigningRequest",
        current.certificate_signing_request.clone(),
    )?;
    let notes = pick("notes", current.notes.clone())?;
    let checked = check_certificate(
        &certificate,
        &private_key,
        intermediate.as_deref(),
        csr.as_deref(),
    )?;
    let entry = state.certificates.get_mut(&id).expect("checked above");
    *entry = StoredCertificate {
        id,
        common_name: checked.common_name,
        organization_name: checked.organization_name,
        certificate,
        private_key,
        intermediate_certificate: intermediate,
        certificate_signing_request: csr,
        notes,
        validity_begin: checked.validity_begin,
        validity_end: checked.validity_end,
        key_size: checked.key_size,
        create_date: current.create_date,
        modify_date: now,
        sha256: checked.sha256,
    };
    Ok(())
}
