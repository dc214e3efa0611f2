//! `SoftLayer_Account` (§2.4): the caller's account and its certificate store listings.

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::certificate::certificate_json;
use super::{
    Answer, ApiError, Call, State, StoredCertificate, expect_parameters, list_answer, portal_date,
    unknown_method,
};

pub(super) fn call(
    state: &mut State,
    call: &Call,
    now: OffsetDateTime,
) -> Result<Answer, ApiError> {
    // The Account service works on the caller's account; an explicit id must be it.
    if let Some(id) = call.id
        && id != state.account.id
    {
        return Err(ApiError::not_found(id));
    }
    let certificates = |root: &str, keep: &dyn Fn(&StoredCertificate) -> bool| {
        expect_parameters(call, 0)?;
        let items: Vec<Value> = state
            .certificates
            .values()
            .filter(|c| keep(c))
            .map(|c| certificate_json(c, false, now))
            .collect();
        let filter = call.query.filter.as_ref().and_then(|f| f.get(root));
        list_answer(items, filter, call.query.limit)
    };
    match call.method.as_str() {
        "getObject" => {
            expect_parameters(call, 0)?;
            let account = &state.account;
            Ok(Answer::value(json!({
                "id": account.id,
                "companyName": "Local Test Portal",
                "email": "ops@example.com",
                "accountStatusId": 1001,
                "brandId": 2,
                "createDate": portal_date(now - time::Duration::days(3650)),
            })))
        }
        "getSecurityCertificates" => certificates("securityCertificates", &|_| true),
        "getValidSecurityCertificates" => {
            certificates("validSecurityCertificates", &|c| c.validity_end > now)
        }
        "getExpiredSecurityCertificates" => {
            certificates("expiredSecurityCertificates", &|c| c.validity_end <= now)
        }
        other => Err(unknown_method(other)),
    }
}
