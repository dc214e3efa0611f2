//! IBM Cloud Load Balancer (LBaaS) listeners: which listeners use a certificate, their load
//! balancers, moving a listener to another certificate, and the store's own checks before a
//! certificate is deleted (docs/softlayer-api.md §7, which the "§7.N" below cite).
//!
//! `updateLoadBalancerProtocols` is never retried blindly: after an answer that is lost the
//! caller reads the listener back (§7.3), since a configuration sent twice is harmless but a
//! configuration sent without its listener uuid would create a listener.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Call, ListOf, Portal, PortalError, Retry};

/// `SoftLayer_Network_LBaaS_Listener` with its backend, `defaultPool` (§7.2).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    pub uuid: String,
    pub protocol: Option<String>,
    pub protocol_port: Option<i64>,
    pub connection_limit: Option<i64>,
    pub client_timeout: Option<i64>,
    pub server_timeout: Option<i64>,
    pub tls_certificate_id: Option<i64>,
    pub provisioning_status: Option<String>,
    pub default_pool: Option<Pool>,
}

/// `SoftLayer_Network_LBaaS_Pool`: the listener's backend (§7.2).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Pool {
    pub protocol: Option<String>,
    pub protocol_port: Option<i64>,
    pub load_balancing_algorithm: Option<String>,
    pub session_affinity: Option<SessionAffinity>,
}

/// `SoftLayer_Network_LBaaS_SessionAffinity` (§7.2).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SessionAffinity {
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// `SoftLayer_Network_LBaaS_LoadBalancer` (§7.4).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancer {
    pub uuid: String,
    pub name: Option<String>,
    pub provisioning_status: Option<String>,
    pub operating_status: Option<String>,
    #[serde(default)]
    pub listeners: Vec<Listener>,
}

impl LoadBalancer {
    pub fn listener(&self, uuid: &str) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.uuid == uuid)
    }

    pub fn provisioning(&self) -> Provisioning {
        Provisioning::of(self.provisioning_status.as_deref())
    }
}

/// Where a load balancer's last change is (§7.4: Terraform waits through UPDATE_PENDING
/// for ACTIVE, and fails on any other state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provisioning {
    Active,
    /// `CREATE_PENDING` or `UPDATE_PENDING`: a change is being applied.
    Pending(String),
    /// Anything else (`DELETE_PENDING`, `DELETED`, `ERROR`, none): no change will apply.
    Other(String),
}

impl Provisioning {
    pub fn of(status: Option<&str>) -> Provisioning {
        match status {
            Some("ACTIVE") => Provisioning::Active,
            Some(s @ ("UPDATE_PENDING" | "CREATE_PENDING")) => Provisioning::Pending(s.into()),
            Some(other) => Provisioning::Other(other.into()),
            None => Provisioning::Other("no provisioningStatus".into()),
        }
    }
}

/// `SoftLayer_Network_LBaaS_LoadBalancerProtocolConfiguration` (§7.3). `listener_uuid` is
/// not optional: a configuration without it creates a new listener.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ProtocolConfiguration {
    pub listener_uuid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frontend_protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frontend_port: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend_port: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancing_method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_conn: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_timeout: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_timeout: Option<i64>,
    pub tls_certificate_id: i64,
}

impl Listener {
    /// The listener's whole configuration as it is, with only the certificate changed
    /// (§7.3: whether omitted fields are reset is not documented, and IBM's docs say
    /// omitted timeouts go back to their defaults).
    pub fn configuration(&self, tls_certificate_id: i64) -> ProtocolConfiguration {
        let pool = self.default_pool.as_ref();
        ProtocolConfiguration {
            listener_uuid: self.uuid.clone(),
            frontend_protocol: self.protocol.clone(),
            frontend_port: self.protocol_port,
            backend_protocol: pool.and_then(|p| p.protocol.clone()),
            backend_port: pool.and_then(|p| p.protocol_port),
            load_balancing_method: pool.and_then(|p| p.load_balancing_algorithm.clone()),
            session_type: (pool.and_then(|p| p.session_affinity.as_ref()))
                .and_then(|s| s.kind.clone())
                .filter(|kind| !kind.is_empty()),
            max_conn: self.connection_limit,
            client_timeout: self.client_timeout,
            server_timeout: self.server_timeout,
            tls_certificate_id,
        }
    }
}

/// The listener properties fulfill reads (§7.2), inside a mask.
const LISTENER_FIELDS: &str = "uuid,protocol,protocolPort,connectionLimit,clientTimeout,serverTimeout,\
tlsCertificateId,provisioningStatus,defaultPool[protocol,protocolPort,loadBalancingAlgorithm,sessionAffinity[type]]";

impl Portal {
    /// The listeners that use a certificate of the store (§7.1 `getLbaasListeners`).
    pub fn lbaas_listeners(&self, certificate_id: i64) -> Result<Vec<Listener>, PortalError> {
        let mask = format!("mask[{LISTENER_FIELDS}]");
        let mut call = Call::new("SoftLayer_Security_Certificate", "getLbaasListeners");
        call.id = Some(certificate_id);
        call.mask = Some(&mask);
        let listeners: ListOf<Listener> = self.call(&call)?;
        Ok(listeners.0)
    }

    /// Every load balancer of the account with its listeners' uuids: the listener type has
    /// no documented relation to its load balancer (§7.2), so this is how a listener's load
    /// balancer is found.
    pub fn load_balancers(&self) -> Result<Vec<LoadBalancer>, PortalError> {
        let mut call = Call::new("SoftLayer_Network_LBaaS_LoadBalancer", "getAllObjects");
        call.mask = Some("mask[uuid,name,provisioningStatus,listeners[uuid]]");
        let balancers: ListOf<LoadBalancer> = self.call(&call)?;
        Ok(balancers.0)
    }

    /// One load balancer by uuid, with its status and its listeners (§7.4 `getLoadBalancer`).
    pub fn load_balancer(&self, uuid: &str) -> Result<LoadBalancer, PortalError> {
        let mask = format!(
            "mask[uuid,name,provisioningStatus,operatingStatus,listeners[{LISTENER_FIELDS}]]"
        );
        let mut call = Call::new("SoftLayer_Network_LBaaS_LoadBalancer", "getLoadBalancer");
        call.parameters = Some(json!([uuid]));
        call.mask = Some(&mask);
        self.call(&call)
    }

    /// Sends one listener's configuration (§7.3 `updateLoadBalancerProtocols`). Never
    /// retried here: after a fault whose outcome is unknown the caller reads the listener
    /// back before it sends again.
    pub fn update_listener(
        &self,
        load_balancer_uuid: &str,
        configuration: &ProtocolConfiguration,
    ) -> Result<(), PortalError> {
        let mut call = Call::new(
            "SoftLayer_Network_LBaaS_Listener",
            "updateLoadBalancerProtocols",
        );
        call.parameters = Some(json!([load_balancer_uuid, [configuration]]));
        call.mask = Some("mask[uuid]");
        call.retry = Retry::Never;
        let _answer: Value = self.call(&call)?;
        Ok(())
    }

    /// How many services use a certificate of the store (§7.1 `getAssociatedServiceCount`).
    pub fn associated_service_count(&self, certificate_id: i64) -> Result<i64, PortalError> {
        let mut call = Call::new(
            "SoftLayer_Security_Certificate",
            "getAssociatedServiceCount",
        );
        call.id = Some(certificate_id);
        let count: Value = self.call(&call)?;
        count.as_i64().ok_or_else(|| PortalError::Unexpected {
            call: call.name(),
            why: format!("expected a number, got {count}"),
        })
    }

    /// Removes a certificate from the store (§2.1, §7.1: refused while services use it).
    /// Retried only when the fault shows it was not performed; a certificate that is gone
    /// already (a lost answer before) is `Ok(false)`.
    pub fn delete_certificate(&self, certificate_id: i64) -> Result<bool, PortalError> {
        let mut call = Call::new("SoftLayer_Security_Certificate", "deleteObject");
        call.id = Some(certificate_id);
        call.retry = Retry::UnlessPerformed;
        match self.call::<Value>(&call) {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("SoftLayer_Exception_ObjectNotFound") => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configuration_keeps_everything_but_the_certificate() {
        let listener: Listener = serde_json::from_value(json!({
            "uuid": "l-1", "protocol": "HTTPS", "protocolPort": 443, "connectionLimit": 500,
            "clientTimeout": 60, "serverTimeout": 70, "tlsCertificateId": 11,
            "defaultPool": {"protocol": "HTTP", "protocolPort": 80,
                "loadBalancingAlgorithm": "LEASTCONNECTION", "sessionAffinity": {"type": "SOURCE_IP"}}
        }))
        .unwrap();
        let sent = serde_json::to_value(listener.configuration(22)).unwrap();
        assert_eq!(
            sent,
            json!({"listenerUuid": "l-1", "frontendProtocol": "HTTPS", "frontendPort": 443,
                "backendProtocol": "HTTP", "backendPort": 80, "loadBalancingMethod": "LEASTCONNECTION",
                "sessionType": "SOURCE_IP", "maxConn": 500, "clientTimeout": 60, "serverTimeout": 70,
                "tlsCertificateId": 22})
        );
    }

    #[test]
    fn only_active_ends_a_wait_and_only_pending_states_continue_it() {
        assert_eq!(Provisioning::of(Some("ACTIVE")), Provisioning::Active);
        assert!(matches!(
            Provisioning::of(Some("UPDATE_PENDING")),
            Provisioning::Pending(_)
        ));
        assert!(matches!(
            Provisioning::of(Some("DELETE_PENDING")),
            Provisioning::Other(_)
        ));
        assert!(matches!(Provisioning::of(None), Provisioning::Other(_)));
    }
}
