//! `vgpu-bake answer`: golden outputs in `tests/answer/<case>.out`, from the
//! real binary. `VGPU_BAKE_BLESS=1 cargo test -p vgpu-bake --test answer`
//! rewrites them; review the diff before committing.

use std::path::{Path, PathBuf};
use std::process::Command;

use vgpu_plan::iommu::Vendor;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn answer(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vgpu-bake"))
        .arg("answer")
        .args(args)
        .current_dir(workspace())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const FP: &str = "ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67:89";

/// (case, arguments): the demo (`iommu = "auto"`: both vendors), an AMD
/// profile with a kernel pin, a passthrough profile with an extra
/// argument, the from-url form and JSON.
const CASES: &[(&str, &[&str])] = &[
    ("demo", &["profiles/demo.toml"]),
    ("amd-pinned", &["tests/profiles/unlock-pve9-pin614.toml"]),
    ("intel", &["tests/profiles/native-a100-corrected.toml"]),
    ("passthrough", &["profiles/passthrough.toml"]),
    (
        "from-url",
        &[
            "profiles/demo.toml",
            "--hook-url",
            "https://10.0.0.5/fleet/first-boot-hook",
            "--cert-fingerprint",
            FP,
        ],
    ),
    (
        "from-url-json",
        &[
            "profiles/passthrough.toml",
            "--hook-url",
            "http://10.0.0.5/fleet/first-boot-hook",
            "--json",
        ],
    ),
];

#[test]
fn golden_answers() {
    let dir = workspace().join("tests/answer");
    let bless = std::env::var_os("VGPU_BAKE_BLESS").is_some();
    let mut failures = Vec::new();
    for (case, args) in CASES {
        let (code, stdout, stderr) = answer(args);
        assert_eq!(code, 0, "{case}: {stderr}");
        let file = dir.join(format!("{case}.out"));
        if bless {
            std::fs::write(&file, &stdout).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&file).unwrap_or_default();
        if stdout != expected {
            failures.push(format!(
                "{case}:\n--- expected\n{expected}\n--- got\n{stdout}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The boot line starts with exactly the agent's arguments: the vendor's
/// IOMMU arguments (the rule the agent's kernel-args step reads) and the
/// profile's extras.
#[test]
fn the_line_is_the_agents_arguments() {
    let (_, out, _) = answer(&["profiles/passthrough.toml", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["schema"], 1);
    assert_eq!(doc["first-boot"]["source"], "from-iso");
    assert_eq!(doc["first-boot"]["ordering"], "network-online");
    let lines = doc["kernel-args"].as_array().unwrap();
    assert_eq!(lines.len(), 2, "auto: one line per vendor");
    for (line, vendor) in lines.iter().zip([Vendor::Intel, Vendor::Amd]) {
        let mut want: Vec<String> = vendor
            .iommu_kernel_args()
            .iter()
            .map(|a| a.to_string())
            .collect();
        want.push("pcie_acs_override=downstream".into());
        let got: Vec<String> = line["agent-args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(got, want);
        assert_eq!(
            line["line"].as_str().unwrap(),
            format!("{} modprobe.blacklist=nouveau", want.join(" "))
        );
    }
}

#[test]
fn refuses_bad_urls_and_fingerprints() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["profiles/demo.toml", "--hook-url", "ftp://x/hook"],
            "--hook-url \"ftp://x/hook\" must be an http:// or https:// URL",
        ),
        (
            &[
                "profiles/demo.toml",
                "--hook-url",
                "http://x/hook",
                "--cert-fingerprint",
                FP,
            ],
            "--cert-fingerprint applies to an https --hook-url, not http://x/hook",
        ),
        (
            &[
                "profiles/demo.toml",
                "--hook-url",
                "https://x/hook",
                "--cert-fingerprint",
                "AB:CD",
            ],
            "--cert-fingerprint \"AB:CD\" is not a SHA-256 fingerprint",
        ),
        (
            &["tests/profiles/err-bad-mode.toml"],
            "tests/profiles/err-bad-mode.toml:3:8:",
        ),
    ];
    for (args, want) in cases {
        let (code, out, err) = answer(args);
        // A bad flag is a usage error (2); a bad profile is a user error (1).
        let usage = args.iter().any(|a| a.starts_with("--"));
        assert_eq!(code, if usage { 2 } else { 1 }, "{args:?}: {out}{err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
    }
    // A fingerprint without a URL is a usage error.
    let (code, _, _) = answer(&["profiles/demo.toml", "--cert-fingerprint", FP]);
    assert_eq!(code, 2);
}

/// The `[first-boot]` part of the text pastes into an answer file as TOML.
#[test]
fn the_section_is_toml() {
    let (_, out, _) = answer(&[
        "profiles/demo.toml",
        "--hook-url",
        "https://10.0.0.5/fleet/first-boot-hook",
        "--cert-fingerprint",
        FP,
    ]);
    let start = out.find("[first-boot]").unwrap();
    let section = &out[start..start + out[start..].find("\n\n").unwrap()];
    let table: toml::Table = section.parse().unwrap();
    let fb = table["first-boot"].as_table().unwrap();
    assert_eq!(fb["source"].as_str(), Some("from-url"));
    assert_eq!(fb["ordering"].as_str(), Some("network-online"));
    assert_eq!(
        fb["url"].as_str(),
        Some("https://10.0.0.5/fleet/first-boot-hook")
    );
    assert_eq!(
        fb["cert-fingerprint"].as_str(),
        Some(FP.to_uppercase().as_str())
    );
    assert_eq!(fb.len(), 4);
}
