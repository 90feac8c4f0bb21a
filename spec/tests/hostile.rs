//! Hostile input: whatever bytes or YAML-shaped text the loader is given, it returns a
//! value or an error, never a panic, a stack overflow or an endless expansion.

use std::path::Path;

use berth_spec::interpolate::{interpolate_str, interpolate_value};
use berth_spec::merge::merge_documents;
use berth_spec::yaml::{Parsed, parse};
use berth_spec::{Error, extends, profiles};
use proptest::prelude::*;

/// Everything after parsing that needs no file system, run on one document.
fn pipeline(text: &str) {
    let file = Path::new("/fuzz/compose.yaml");
    let Ok(mut parsed) = parse(text, file) else {
        return;
    };
    let lookup = |name: &str| (name.len() % 2 == 0).then(|| format!("v{name}"));
    let _ = interpolate_value(&mut parsed.value, &lookup, &mut |_, _| {});
    let mut load =
        |_: &Path| -> Result<Parsed, Error> { Err(Error::Project("no other files".into())) };
    let _ = extends::apply_extends(&mut parsed, file, &mut load);
    let twice = merge_documents(parsed.value.clone(), parsed.value.clone());
    let mut doc = twice.value;
    let _ = profiles::apply_profiles(&mut doc, &["p".to_string()], &[]);
    let _ = profiles::all_profiles(&doc);
    // The lazy source map replays its log (index, extends re-keyings) on this lookup.
    let _ = parsed
        .source_map
        .locate(&[berth_spec::PathSeg::Key("services".into())]);
    // And the typed model on whatever came out.
    let locate = |p: &[berth_spec::PathSeg]| parsed.source_map.locate(p);
    let _ = berth_spec::App::from_document(
        "fuzz",
        Path::new("/fuzz"),
        &indexmap::IndexMap::new(),
        doc,
        &locate,
    );
}

/// Cases per property: the default, or `BERTH_HOSTILE_CASES` for a longer campaign
/// (`BERTH_HOSTILE_CASES=20000 cargo test --release -p berth-spec --test hostile`), the
/// stable-toolchain stand-in for the cargo-fuzz target in `spec/fuzz`.
fn cases(default: u32) -> u32 {
    std::env::var("BERTH_HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn yamlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("services:\n".to_string()),
        Just("  web:\n".to_string()),
        Just("    image: x\n".to_string()),
        Just("    extends: web\n".to_string()),
        Just("    extends: {service: db}\n".to_string()),
        Just("  db: {extends: web, ports: ['80:80']}\n".to_string()),
        Just("    ports: !reset []\n".to_string()),
        Just("    environment: !override {A: 1}\n".to_string()),
        Just("    profiles: [p]\n".to_string()),
        Just("    depends_on: [db]\n".to_string()),
        Just("x-a: &a {k: v}\n".to_string()),
        Just("  <<: *a\n".to_string()),
        Just("<<: [*a, *a]\n".to_string()),
        Just("- ".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just(": ".to_string()),
        Just(", ".to_string()),
        Just("&b ".to_string()),
        Just("*b ".to_string()),
        Just("${A:-${B}}".to_string()),
        Just("${".to_string()),
        Just("$$".to_string()),
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("\n".to_string()),
        Just("  ".to_string()),
        Just("\t".to_string()),
        Just("? ".to_string()),
        Just("--- ".to_string()),
        "[a-z$:{}]{0,6}",
    ];
    prop::collection::vec(token, 0..40).prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(512), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        pipeline(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn yaml_shaped_text_never_panics(text in yamlish()) {
        pipeline(&text);
    }

    #[test]
    fn interpolation_never_panics(text in "[ -~$]{0,64}") {
        let lookup = |name: &str| (name == "A").then(|| "a".to_string());
        let out = interpolate_str(&text, &lookup, &mut |_| {});
        if !text.contains('$') {
            prop_assert_eq!(out, Ok(text));
        }
    }
}

#[test]
fn wide_alias_expansion_is_bounded() {
    // Not a classic billion laughs: one big anchor repeated many times, each alias cheap
    // for serde_yaml's own repetition counter but costly in memory once expanded.
    let big: Vec<String> = (0..4000).map(|i| format!("v{i}")).collect();
    let mut text = format!(
        "x-big: &big [{}]\nservices:\n  s:\n    labels: [",
        big.join(", ")
    );
    text.push_str(&vec!["*big"; 2000].join(", "));
    text.push_str("]\n");
    let err = parse(&text, Path::new("wide.yaml")).unwrap_err();
    assert!(err.to_string().contains("alias bomb"), "{err}");
}

#[test]
fn nested_flow_and_block_input_is_rejected_cleanly() {
    for text in [
        "[".repeat(100_000),
        "{a: ".repeat(50_000),
        "- ".repeat(50_000),
        "{a: ".repeat(2_000),
        format!("{}\n", "- ".repeat(101)),
    ] {
        let started = std::time::Instant::now();
        let err = parse(&text, Path::new("deep.yaml")).unwrap_err();
        assert!(matches!(err, Error::Syntax { .. }), "{err}");
        let message = err.to_string();
        assert!(
            message.contains("nesting deeper than 100 levels")
                || message.contains("recursion limit exceeded"),
            "{message}"
        );
        // One line, without a hundred-segment key path in front.
        assert!(message.len() < 120, "{message}");
        // Fast, debug build included (libyaml is quadratic in flow depth: this must be
        // caught before it).
        assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
    }
}

#[test]
fn large_keyed_lists_merge_without_quadratic_cost() {
    // 20 000 ports on each side: a quadratic merge would take minutes here.
    let ports = |offset: usize| -> String {
        (0..20_000)
            .map(|i| format!("'{}:{}'", 10_000 + offset + i, i))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let a = parse(
        &format!("services: {{web: {{image: x, ports: [{}]}}}}\n", ports(0)),
        Path::new("a.yaml"),
    )
    .unwrap();
    let b = parse(
        &format!("services: {{web: {{ports: [{}]}}}}\n", ports(10_000)),
        Path::new("b.yaml"),
    )
    .unwrap();
    let merged = merge_documents(a.value, b.value);
    let mut map = a.source_map;
    merged.trace.apply(&mut map, b.source_map);
    let ports = merged.value["services"]["web"]["ports"]
        .as_sequence()
        .unwrap();
    // Host ports 20000..29999 appear on both sides with different targets: all distinct.
    assert_eq!(ports.len(), 40_000);
}

/// Real files (read once), to be damaged: a byte flipped, a range cut out or repeated.
fn corpus_texts() -> &'static [String] {
    static TEXTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    TEXTS.get_or_init(read_corpus_texts)
}

fn read_corpus_texts() -> Vec<String> {
    let mut texts = Vec::new();
    for group in ["haxx", "popular", "random"] {
        let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/compose");
        let root = [
            beside,
            Path::new("/work/shared/corpus/compose").to_path_buf(),
        ]
        .into_iter()
        .find(|p| p.is_dir())
        .unwrap_or_default();
        let Ok(entries) = std::fs::read_dir(root.join(group)) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Ok(text) = std::fs::read_to_string(entry.path()) {
                texts.push(text);
            }
        }
    }
    if texts.is_empty() {
        texts.push("services:\n  web:\n    image: x\n    ports: ['80:80']\n".into());
    }
    texts
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    #[test]
    fn damaged_real_files_never_panic(
        pick in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        len in 0usize..64,
        byte in any::<u8>(),
        mode in 0u8..3,
    ) {
        let texts = corpus_texts();
        let mut bytes = texts[pick.index(texts.len())].clone().into_bytes();
        let start = at.index(bytes.len().max(1)).min(bytes.len());
        let end = (start + len).min(bytes.len());
        match mode {
            0 => {
                if start < bytes.len() {
                    bytes[start] = byte;
                }
            }
            1 => {
                bytes.drain(start..end);
            }
            _ => {
                let piece: Vec<u8> = bytes[start..end].to_vec();
                for _ in 0..4 {
                    bytes.splice(start..start, piece.iter().copied());
                }
            }
        }
        pipeline(&String::from_utf8_lossy(&bytes));
    }
}
