//! Defaults and canonical forms filled in by normalization, as Docker Compose fills them.

use std::path::Path;

use berth_spec::model::{Condition, DependencyKind};
use berth_spec::{App, Location};
use indexmap::IndexMap;

fn load(yaml: &str) -> (App, Vec<berth_spec::Warning>) {
    let env: IndexMap<String, String> = IndexMap::new();
    let doc: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
    App::from_document("shop", Path::new("/srv/shop"), &env, doc, &|_| {
        Location::file("compose.yaml")
    })
    .unwrap()
}

#[test]
fn default_network_is_implicit_and_only_declared_when_used() {
    let (app, _) =
        load("services: {web: {image: a}, db: {image: b, networks: [back]}}\nnetworks: {back: }");
    assert_eq!(
        app.services["web"].networks.keys().collect::<Vec<_>>(),
        ["default"]
    );
    assert_eq!(
        app.networks["default"].name.as_deref(),
        Some("shop_default")
    );
    assert_eq!(app.networks["back"].name.as_deref(), Some("shop_back"));

    let (app, _) = load(
        "services: {web: {image: a, network_mode: host}, db: {image: b, networks: [back]}}\nnetworks: {back: {}}",
    );
    assert!(!app.networks.contains_key("default"));
    assert!(app.services["web"].networks.is_empty());
}

#[test]
fn resource_names_are_project_scoped_unless_external_or_named() {
    let (app, warnings) = load(
        "services: {web: {image: a}}\n\
         volumes: {data: {}, ext: {external: true}, named: {name: custom}, old: {external: {name: legacy}}}\n\
         secrets: {s: {file: ./s.txt}, e: {external: true}}\n\
         configs: {c: {content: hello}}",
    );
    assert_eq!(app.volumes["data"].name.as_deref(), Some("shop_data"));
    assert_eq!(app.volumes["ext"].name.as_deref(), Some("ext"));
    assert_eq!(app.volumes["named"].name.as_deref(), Some("custom"));
    assert_eq!(app.volumes["old"].name.as_deref(), Some("legacy"));
    assert!(app.volumes["old"].external.external);
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].message.contains("external.name is deprecated"),
        "{}",
        warnings[0]
    );
    assert_eq!(app.secrets["s"].name.as_deref(), Some("shop_s"));
    assert_eq!(app.secrets["s"].file.as_deref(), Some("/srv/shop/s.txt"));
    assert_eq!(app.secrets["e"].name.as_deref(), Some("e"));
    assert_eq!(app.configs["c"].name.as_deref(), Some("shop_c"));
}

#[test]
fn implicit_dependencies_from_links_network_mode_and_volumes_from() {
    let (app, _) = load(
        "services:\n  db: {image: a}\n  vpn: {image: b}\n  data: {image: c}\n  \
         web: {image: d, links: ['db:database'], network_mode: 'service:vpn', volumes_from: ['data:ro', 'container:x']}",
    );
    let web = &app.services["web"];
    let deps: Vec<(&str, bool)> = web
        .depends_on
        .iter()
        .map(|(k, d)| (k.as_str(), d.restart))
        .collect();
    assert_eq!(deps, [("data", false), ("db", true), ("vpn", true)]);
    assert!(
        web.depends_on
            .values()
            .all(|d| d.required && d.condition == Condition::ServiceStarted)
    );

    let kinds = web.dependencies();
    assert!(kinds.contains(&("db".into(), DependencyKind::Link)));
    assert!(kinds.contains(&("vpn".into(), DependencyKind::NetworkMode)));
    assert!(kinds.contains(&("data".into(), DependencyKind::VolumesFrom)));
    assert!(kinds.iter().any(|(n, k)| n == "db" && matches!(k, DependencyKind::DependsOn { restart: true, .. })));
}

#[test]
fn services_and_maps_are_sorted_like_compose() {
    let (app, _) =
        load("services: {zeta: {image: a, environment: {B: 1, A: 2}}, alpha: {image: b}}");
    assert_eq!(app.services.keys().collect::<Vec<_>>(), ["alpha", "zeta"]);
    assert_eq!(
        app.services["zeta"].environment.keys().collect::<Vec<_>>(),
        ["A", "B"]
    );
    let yaml = app.to_yaml();
    assert!(
        yaml.starts_with("name: shop\nservices:\n  alpha:"),
        "{yaml}"
    );
}

#[test]
fn scale_sets_deploy_replicas() {
    let (app, _) = load("services: {web: {image: a, scale: 3, deploy: {mode: replicated}}}");
    assert_eq!(
        app.services["web"].deploy.as_ref().unwrap().replicas,
        Some(3)
    );
    assert_eq!(app.services["web"].replicas(), 3);
}

#[test]
fn build_defaults_and_paths() {
    let (app, _) = load(
        "services: {web: {build: {args: {A: 1}}}, api: {build: {context: ../api, dockerfile_inline: 'FROM x'}}}",
    );
    let b = app.services["web"].build.as_ref().unwrap();
    assert_eq!(b.context.as_deref(), Some("/srv/shop"));
    assert_eq!(b.dockerfile.as_deref(), Some("Dockerfile"));
    let b = app.services["api"].build.as_ref().unwrap();
    assert_eq!(b.context.as_deref(), Some("/srv/api"));
    assert_eq!(b.dockerfile, None);
}

#[test]
fn mount_targets_are_cleaned_and_long_binds_keep_their_options() {
    let (app, _) = load(
        "services: {web: {image: a, volumes: ['./a:/data/', {type: bind, source: ./b, target: /b, bind: {propagation: rslave}}, {type: bind, source: /c, target: /c}]}}",
    );
    let v = &app.services["web"].volumes;
    assert_eq!(v[0].target.as_deref(), Some("/data"));
    assert_eq!(v[1].bind.as_ref().unwrap().create_host_path, Some(true));
    assert!(
        v[2].bind.is_none(),
        "no bind options are invented for long syntax"
    );
}

#[test]
fn hash_is_stable_and_tracks_changes() {
    let (a, _) = load("services: {web: {image: nginx, ports: ['80']}}");
    let (b, _) = load("services: {web: {ports: [{target: 80}], image: nginx}}");
    let (c, _) = load("services: {web: {image: nginx, ports: ['81']}}");
    let h = a.services["web"].hash();
    assert_eq!(h.len(), 64);
    assert_eq!(
        h,
        b.services["web"].hash(),
        "short and long syntax hash the same"
    );
    assert_ne!(h, c.services["web"].hash());
}

#[test]
fn empty_document_is_an_empty_project() {
    let (app, warnings) = load("");
    assert_eq!(app.name, "shop");
    assert!(app.services.is_empty() && warnings.is_empty());
    assert_eq!(app.to_yaml(), "name: shop\nservices: {}\n");
}
