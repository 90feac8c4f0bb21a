//! `/networks/…`: Docker networks are berth bridge networks (a network's Docker name is
//! its berth id), plus this data root's default network shown as Docker's `bridge`, and
//! the `host` and `none` modes shown as the networks Docker lists for them. Labels, the
//! Docker id and creation time live in a side record; bridges, addresses, firewall rules
//! and DNS are berth-network's.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_network::ipam::NetworkRequest;
use berth_network::networks::NetworkConfig;
use bytes::Bytes;
use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::backend::{Backend, blocking};
use crate::error::{ApiError, ApiResult};
use crate::filters::Filters;
use crate::http::{self, Query, Reply, ok_json};

/// What Docker knows of a network that berth does not.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetworkMeta {
    pub id: String,
    pub created: String,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub attachable: bool,
}

/// The Docker id of berth network `berth_id`: recorded, or derived from the name.
pub fn docker_id(b: &Backend, berth_id: &str) -> String {
    if let Some(m) = b.meta::<NetworkMeta>("networks", berth_id) {
        return m.id;
    }
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(
        format!("{}\0{berth_id}", b.data_root().display()).as_bytes(),
    ))
}

/// The Docker name of berth network `berth_id`.
pub fn docker_name(b: &Backend, berth_id: &str) -> String {
    if berth_id == b.default_network {
        "bridge".into()
    } else {
        berth_id.to_string()
    }
}

/// The berth id of a network named or id'd (or id-prefixed) `query`, if it exists or is
/// the default network.
pub fn resolve(b: &Backend, query: &str) -> Option<String> {
    if query == "bridge" || query == b.default_network {
        return Some(b.default_network.clone());
    }
    let nets = b.networks.networks();
    if nets.contains_key(query) {
        return Some(query.to_string());
    }
    let mut found = nets
        .keys()
        .filter(|id| docker_id(b, id).starts_with(query) && query.len() >= 3);
    match (found.next(), found.next()) {
        (Some(id), None) => Some(id.clone()),
        _ => None,
    }
}

fn network_json(b: &Backend, berth_id: &str, with_containers: bool) -> Value {
    let meta: NetworkMeta = b.meta("networks", berth_id).unwrap_or_default();
    let net = b.networks.network(berth_id);
    let config: Vec<Value> = net
        .iter()
        .map(|n| json!({"Subnet": n.subnet_v4.to_string(), "Gateway": n.gateway_v4.to_string()}))
        .collect();
    let mut containers = serde_json::Map::new();
    if with_containers {
        for r in b.containers.records().unwrap_or_default() {
            for ep in r.endpoints.iter().filter(|e| e.network == berth_id) {
                containers.insert(
                    r.id.clone(),
                    json!({
                        "Name": r.name, "EndpointID": "", "MacAddress": ep.mac,
                        "IPv4Address": format!("{}/{}", ep.ip, ep.prefix_len), "IPv6Address": "",
                    }),
                );
            }
        }
    }
    json!({
        "Name": docker_name(b, berth_id),
        "Id": docker_id(b, berth_id),
        "Created": if meta.created.is_empty() { "0001-01-01T00:00:00Z".to_string() } else { meta.created.clone() },
        "Scope": "local",
        "Driver": "bridge",
        "EnableIPv6": net.as_ref().is_some_and(|n| n.subnet_v6.is_some()),
        "IPAM": {"Driver": "default", "Options": {}, "Config": config},
        "Internal": net.as_ref().is_some_and(|n| n.internal),
        "Attachable": meta.attachable,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": containers,
        "Options": meta.options,
        "Labels": meta.labels,
    })
}

fn pseudo(name: &str, driver: &str, b: &Backend) -> Value {
    use sha2::Digest as _;
    json!({
        "Name": name,
        "Id": hex::encode(sha2::Sha256::digest(format!("{}\0{name}", b.data_root().display()).as_bytes())),
        "Created": "0001-01-01T00:00:00Z", "Scope": "local", "Driver": driver, "EnableIPv6": false,
        "IPAM": {"Driver": "default", "Options": null, "Config": []},
        "Internal": false, "Attachable": false, "Ingress": false, "ConfigFrom": {"Network": ""},
        "ConfigOnly": false, "Containers": {}, "Options": {}, "Labels": {},
    })
}

fn all_networks(b: &Backend, with_containers: bool) -> Vec<Value> {
    let mut ids: Vec<String> = b.networks.networks().keys().cloned().collect();
    if !ids.contains(&b.default_network) {
        ids.insert(0, b.default_network.clone());
    }
    let mut out: Vec<Value> = ids
        .iter()
        .map(|id| network_json(b, id, with_containers))
        .collect();
    out.push(pseudo("host", "host", b));
    out.push(pseudo("none", "null", b));
    out
}

pub async fn list(b: &Arc<Backend>, q: &Query) -> ApiResult<Reply> {
    let f = Filters::parse(q.get("filters"))?;
    let b2 = b.clone();
    let nets = blocking(move || Ok(all_networks(&b2, false))).await?;
    let out: Vec<Value> = nets
        .into_iter()
        .filter(|n| {
            let name = n["Name"].as_str().unwrap_or("");
            let id = n["Id"].as_str().unwrap_or("");
            let labels: BTreeMap<String, String> =
                serde_json::from_value(n["Labels"].clone()).unwrap_or_default();
            f.any("name", |v| name.contains(v))
                && f.any("id", |v| id.starts_with(v))
                && f.any("driver", |v| n["Driver"] == v)
                && f.labels_match(&labels)
                && f.any("type", |v| {
                    (v == "builtin") == matches!(name, "bridge" | "host" | "none")
                })
        })
        .collect();
    Ok(ok_json(&Value::Array(out)))
}

pub async fn inspect(b: &Arc<Backend>, q_id: &str) -> ApiResult<Reply> {
    if let Some(p) = ["host", "none"].iter().find(|p| **p == q_id) {
        return Ok(ok_json(&pseudo(
            p,
            if *p == "host" { "host" } else { "null" },
            b,
        )));
    }
    let id =
        resolve(b, q_id).ok_or_else(|| ApiError::not_found(format!("network {q_id} not found")))?;
    let b2 = b.clone();
    let v = blocking(move || Ok(network_json(&b2, &id, true))).await?;
    Ok(ok_json(&v))
}

pub async fn create(b: &Arc<Backend>, body: Bytes) -> ApiResult<Reply> {
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid network config: {e}")))?;
    let name = v["Name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("a network needs a Name"))?
        .to_string();
    if !berth_node_agent::container::options::valid_name(&name) {
        return Err(ApiError::bad_request(format!(
            "invalid network name {name:?}"
        )));
    }
    match v["Driver"].as_str().unwrap_or("") {
        "" | "bridge" => {}
        d => {
            return Err(ApiError::bad_request(format!(
                "network driver {d:?} is not supported by berth (bridge is)"
            )));
        }
    }
    if matches!(name.as_str(), "bridge" | "host" | "none") || resolve(b, &name).is_some() {
        return Err(ApiError::conflict(format!(
            "network with name {name} already exists"
        )));
    }
    let mut request = NetworkRequest {
        enable_ipv6: v["EnableIPv6"].as_bool().unwrap_or(false),
        ..NetworkRequest::default()
    };
    for c in v["IPAM"]["Config"].as_array().cloned().unwrap_or_default() {
        let subnet = c["Subnet"].as_str().unwrap_or("");
        if subnet.is_empty() {
            continue;
        }
        let parsed: ipnetwork::IpNetwork = subnet
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid subnet {subnet:?}")))?;
        let gw = c["Gateway"].as_str().filter(|g| !g.is_empty());
        match parsed {
            ipnetwork::IpNetwork::V4(n) => {
                request.subnet_v4 = Some(n);
                request.gateway_v4 = gw
                    .map(|g| g.parse())
                    .transpose()
                    .map_err(|_| ApiError::bad_request("invalid IPv4 gateway"))?;
            }
            ipnetwork::IpNetwork::V6(n) => {
                request.subnet_v6 = Some(n);
                request.gateway_v6 = gw
                    .map(|g| g.parse())
                    .transpose()
                    .map_err(|_| ApiError::bad_request("invalid IPv6 gateway"))?;
            }
        }
    }
    let meta = NetworkMeta {
        id: crate::backend::random_id(),
        created: berth_shim::time::now_rfc3339(),
        labels: serde_json::from_value(v["Labels"].clone()).unwrap_or_default(),
        options: serde_json::from_value(v["Options"].clone()).unwrap_or_default(),
        attachable: v["Attachable"].as_bool().unwrap_or(false),
    };
    b.put_meta("networks", &name, &meta)?;
    let created = b
        .networks
        .create_network(&NetworkConfig {
            id: name.clone(),
            request,
            internal: v["Internal"].as_bool().unwrap_or(false),
            mtu: v["Options"]["com.docker.network.driver.mtu"]
                .as_str()
                .and_then(|m| m.parse().ok()),
            ..NetworkConfig::default()
        })
        .await;
    if let Err(e) = created {
        b.drop_meta("networks", &name);
        return Err(e.into());
    }
    b.events.publish(
        "network",
        "create",
        &meta.id,
        BTreeMap::from([("name".to_string(), name), ("type".into(), "bridge".into())]),
    );
    Ok(http::json_reply(
        StatusCode::CREATED,
        &json!({"Id": meta.id, "Warning": ""}),
    ))
}

/// Removes berth network `id` unless a container is connected.
async fn remove_one(b: &Arc<Backend>, id: &str) -> ApiResult<()> {
    let b2 = b.clone();
    let id2 = id.to_string();
    let users: Vec<String> = blocking(move || {
        Ok(b2
            .containers
            .records()?
            .into_iter()
            .filter(|r| {
                r.endpoints.iter().any(|e| e.network == id2)
                    || r.config.network
                        == berth_node_agent::container::NetworkMode::Bridge(id2.clone())
            })
            .map(|r| r.name)
            .collect())
    })
    .await?;
    if !users.is_empty() {
        return Err(ApiError::conflict(format!(
            "error while removing network: network {} has active endpoints (containers {})",
            docker_name(b, id),
            users.join(", ")
        )));
    }
    let docker = docker_id(b, id);
    if b.networks.network(id).is_some() {
        b.networks.remove_network(id).await?;
    }
    b.drop_meta("networks", id);
    b.events.publish(
        "network",
        "destroy",
        &docker,
        BTreeMap::from([("name".to_string(), docker_name(b, id))]),
    );
    Ok(())
}

pub async fn remove(b: &Arc<Backend>, q_id: &str) -> ApiResult<Reply> {
    if matches!(q_id, "bridge" | "host" | "none") {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("{q_id} is a pre-defined network and cannot be removed"),
        ));
    }
    let id = resolve(b, q_id)
        .filter(|id| *id != b.default_network)
        .ok_or_else(|| ApiError::not_found(format!("network {q_id} not found")))?;
    remove_one(b, &id).await?;
    Ok(http::no_content())
}

pub async fn prune(b: &Arc<Backend>, q: &Query) -> ApiResult<Reply> {
    let f = Filters::parse(q.get("filters"))?;
    let mut deleted = Vec::new();
    for id in b.networks.networks().keys() {
        if *id == b.default_network {
            continue;
        }
        let meta: NetworkMeta = b.meta("networks", id).unwrap_or_default();
        if !f.labels_match(&meta.labels) {
            continue;
        }
        if remove_one(b, id).await.is_ok() {
            deleted.push(id.clone());
        }
    }
    Ok(ok_json(&json!({"NetworksDeleted": deleted})))
}

/// `POST /networks/{id}/connect|disconnect`. berth gives a container one network, chosen
/// before it starts: connecting a created container moves it to the network (and records
/// its aliases); connecting it to the network it already has only records the aliases.
/// A running container cannot change networks yet.
pub async fn connect(
    b: &Arc<Backend>,
    q_net: &str,
    body: Bytes,
    connect: bool,
) -> ApiResult<Reply> {
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid request: {e}")))?;
    let container = v["Container"]
        .as_str()
        .ok_or_else(|| ApiError::bad_request("no Container given"))?
        .to_string();
    let net = resolve(b, q_net)
        .ok_or_else(|| ApiError::not_found(format!("network {q_net} not found")))?;
    let aliases: Vec<String> = v["EndpointConfig"]["Aliases"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let b2 = b.clone();
    let record = blocking(move || {
        let mut r = b2.containers.resolve(&container)?;
        b2.containers.observe(&mut r);
        let current = crate::containers::configured_network(&b2, &r);
        let same = current.as_deref() == Some(net.as_str());
        if r.state.status == berth_node_agent::container::Status::Running && !(connect && same) {
            return Err(ApiError::new(
                StatusCode::NOT_IMPLEMENTED,
                "berth cannot change the network of a running container yet",
            ));
        }
        if !connect && !same {
            return Err(ApiError::not_found(format!(
                "container {} is not connected to network {}",
                r.name,
                docker_name(&b2, &net)
            )));
        }
        let mode = if !connect {
            berth_node_agent::container::NetworkMode::None
        } else if net == b2.default_network {
            berth_node_agent::container::NetworkMode::Default
        } else {
            berth_node_agent::container::NetworkMode::Bridge(net.clone())
        };
        if r.config.network != mode {
            let dir = b2.containers.container_dir(&r.id);
            let mut rec = berth_node_agent::container::Record::load(&dir)?;
            rec.config.network = mode;
            rec.save(&dir)?;
        }
        b2.update_extra(&r.id, |e| {
            if connect {
                for a in aliases {
                    if !e.aliases.contains(&a) {
                        e.aliases.push(a);
                    }
                }
            } else {
                e.aliases.clear();
            }
        });
        Ok(r)
    })
    .await?;
    b.container_event(if connect { "connect" } else { "disconnect" }, &record, &[]);
    Ok(http::status_only(StatusCode::OK))
}
