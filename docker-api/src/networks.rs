//! `/networks/…`: Docker networks are berth bridge networks, one set of records for every
//! client. A network's Docker name is its berth id (this data root's default network is
//! Docker's `bridge`), its Docker id `network_hash` of that, and its labels and creation
//! time live in berth-network's own record — so `docker network ls` shows networks made by
//! `berth network create` and `berth up` (with the `com.docker.compose.*` labels), and
//! `berth network ls` shows networks made here. Listing and creating go through the
//! container layer's network operations (under the data root's network lock, re-reading
//! the records other processes changed); this module only shapes Docker's JSON and
//! filters. `host` and `none` are shown as the networks Docker lists for those modes.

use std::collections::BTreeMap;
use std::sync::Arc;

use berth_node_agent::container::{NetworkCreate, network_hash};
use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::backend::{Backend, blocking};
use crate::error::{ApiError, ApiResult};
use crate::filters::Filters;
use crate::http::{self, Query, Reply, ok_json};

/// Go clients decode `Created` as a time; the zero time stands for "unknown".
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The Docker id of berth network `berth_id`.
pub fn docker_id(_b: &Backend, berth_id: &str) -> String {
    network_hash(berth_id)
}

/// The Docker name of berth network `berth_id`.
pub fn docker_name(b: &Backend, berth_id: &str) -> String {
    if berth_id == b.default_network {
        "bridge".into()
    } else {
        berth_id.to_string()
    }
}

/// Every network as the container layer shows it (the records on disk, re-read), with the
/// fields Docker clients need filled in. Blocking.
fn all_networks(b: &Backend) -> ApiResult<Vec<Value>> {
    let mut nets = b.containers.network_list()?;
    for n in &mut nets {
        if n["Created"].as_str().is_none_or(str::is_empty) {
            n["Created"] = json!(ZERO_TIME);
        }
        let obj = n.as_object_mut().expect("network JSON is an object");
        for (k, v) in [
            ("Ingress", json!(false)),
            ("ConfigFrom", json!({"Network": ""})),
            ("ConfigOnly", json!(false)),
            ("Attachable", json!(false)),
            ("Options", json!({})),
            ("Labels", json!({})),
            ("Containers", json!({})),
        ] {
            obj.entry(k).or_insert(v);
        }
    }
    Ok(nets)
}

/// The berth id of the network `v` (one of [`all_networks`]).
fn berth_id(b: &Backend, v: &Value) -> String {
    match v["Name"].as_str().unwrap_or_default() {
        "bridge" => b.default_network.clone(),
        name => name.to_string(),
    }
}

/// The network named, id'd or id-prefixed (at least 3 characters) `query`. Blocking.
fn find(b: &Backend, query: &str) -> ApiResult<Option<Value>> {
    let query = if query == b.default_network {
        "bridge"
    } else {
        query
    };
    let nets = all_networks(b)?;
    if let Some(n) = nets.iter().find(|n| n["Name"] == query) {
        return Ok(Some(n.clone()));
    }
    let mut by_id = nets
        .into_iter()
        .filter(|n| query.len() >= 3 && n["Id"].as_str().is_some_and(|id| id.starts_with(query)));
    Ok(match (by_id.next(), by_id.next()) {
        (Some(n), None) => Some(n),
        _ => None,
    })
}

/// The berth id of the bridge network named or id'd `query` (not `host`/`none`).
pub async fn resolve(b: &Arc<Backend>, query: &str) -> ApiResult<Option<String>> {
    if query == "bridge" || query == b.default_network {
        return Ok(Some(b.default_network.clone()));
    }
    let b2 = b.clone();
    let q = query.to_string();
    blocking(move || {
        Ok(find(&b2, &q)?
            .filter(|n| n["Driver"] == "bridge")
            .map(|n| berth_id(&b2, &n)))
    })
    .await
}

pub async fn list(b: &Arc<Backend>, q: &Query) -> ApiResult<Reply> {
    let f = Filters::parse(q.get("filters"))?;
    let b2 = b.clone();
    let nets = blocking(move || all_networks(&b2)).await?;
    let out: Vec<Value> = nets
        .into_iter()
        .map(|mut n| {
            // as Docker's list: containers only in inspect
            n["Containers"] = json!({});
            n
        })
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
    let b2 = b.clone();
    let q = q_id.to_string();
    let v = blocking(move || find(&b2, &q)).await?;
    v.map(|v| ok_json(&v))
        .ok_or_else(|| ApiError::not_found(format!("network {q_id} not found")))
}

/// Pure: the container layer's network request for a Docker `POST /networks/create` body.
pub(crate) fn create_request(v: &Value) -> ApiResult<NetworkCreate> {
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
    let mut subnets = Vec::new();
    let mut gateways = Vec::new();
    for c in v["IPAM"]["Config"].as_array().cloned().unwrap_or_default() {
        if let Some(subnet) = c["Subnet"].as_str().filter(|s| !s.is_empty()) {
            subnets.push(subnet.to_string());
            if let Some(gw) = c["Gateway"].as_str().filter(|g| !g.is_empty()) {
                gateways.push(gw.to_string());
            }
        }
    }
    let mtu = match v["Options"]["com.docker.network.driver.mtu"].as_str() {
        Some(m) => Some(
            m.parse::<u32>()
                .map_err(|_| ApiError::bad_request(format!("invalid MTU {m:?}")))?,
        ),
        None => None,
    };
    Ok(NetworkCreate {
        name,
        internal: v["Internal"].as_bool().unwrap_or(false),
        ipv6: v["EnableIPv6"].as_bool().unwrap_or(false),
        subnets,
        gateways,
        mtu,
        labels: serde_json::from_value(v["Labels"].clone()).unwrap_or_default(),
    })
}

pub async fn create(b: &Arc<Backend>, body: Bytes) -> ApiResult<Reply> {
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid network config: {e}")))?;
    let request = create_request(&v)?;
    let name = request.name.clone();
    if matches!(name.as_str(), "bridge" | "host" | "none" | "default")
        || resolve(b, &name).await?.is_some()
    {
        return Err(ApiError::conflict(format!(
            "network with name {name} already exists"
        )));
    }
    let b2 = b.clone();
    let made = blocking(move || Ok(b2.containers.network_create(&request)?)).await?;
    let id = made["Id"].as_str().unwrap_or_default().to_string();
    b.events.publish(
        "network",
        "create",
        &id,
        BTreeMap::from([("name".to_string(), name), ("type".into(), "bridge".into())]),
    );
    Ok(http::json_reply(
        StatusCode::CREATED,
        &json!({"Id": id, "Warning": ""}),
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
    let b2 = b.clone();
    let id2 = id.to_string();
    blocking(move || Ok(b2.containers.network_remove(&id2)?)).await?;
    // a side record of an earlier version of this API, if any
    b.drop_meta("networks", id);
    b.events.publish(
        "network",
        "destroy",
        &docker_id(b, id),
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
        .await?
        .filter(|id| *id != b.default_network)
        .ok_or_else(|| ApiError::not_found(format!("network {q_id} not found")))?;
    remove_one(b, &id).await?;
    Ok(http::no_content())
}

pub async fn prune(b: &Arc<Backend>, q: &Query) -> ApiResult<Reply> {
    let f = Filters::parse(q.get("filters"))?;
    let b2 = b.clone();
    let nets = blocking(move || all_networks(&b2)).await?;
    let mut deleted = Vec::new();
    for n in nets {
        let name = n["Name"].as_str().unwrap_or_default();
        if matches!(name, "bridge" | "host" | "none") {
            continue;
        }
        let labels: BTreeMap<String, String> =
            serde_json::from_value(n["Labels"].clone()).unwrap_or_default();
        if !f.labels_match(&labels) {
            continue;
        }
        let id = berth_id(b, &n);
        if remove_one(b, &id).await.is_ok() {
            deleted.push(id);
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
        .await?
        .ok_or_else(|| ApiError::not_found(format!("network {q_net} not found")))?;
    let aliases: Vec<String> = v["EndpointConfig"]["Aliases"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let links: Vec<String> = v["EndpointConfig"]["Links"]
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
        // links on this network (docker-compose v1 sends them here): `/etc/hosts` entries
        let hosts = if connect {
            crate::containers::link_hosts(&b2, &links, Some(net.as_str()))?
        } else {
            Vec::new()
        };
        let new_hosts: Vec<String> = hosts
            .into_iter()
            .filter(|h| !r.config.add_host.contains(h))
            .collect();
        if r.config.network != mode || !new_hosts.is_empty() {
            let dir = b2.containers.container_dir(&r.id);
            let mut rec = berth_node_agent::container::Record::load(&dir)?;
            rec.config.network = mode;
            rec.config.add_host.extend(new_hosts);
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
