//! `vgpu_plan::from_toml` reads a parsed table with its own small
//! deserializer (`de.rs`); it must accept, refuse and word its errors
//! exactly as reading through `toml::Table`'s own deserializer does (but
//! for a struct written as an array, which it refuses). Every
//! baked plan fixture, a manifest and a compatibility table are checked
//! as they are and with each value replaced by wrong ones, a line dropped,
//! or an unknown key added.

use std::fmt::Debug;
use std::path::Path;

use serde::de::DeserializeOwned;
use vgpu_plan::compat::CompatTable;
use vgpu_plan::manifest::Manifest;
use vgpu_plan::plan::Plan;

/// The reference: `toml::Table`'s deserializer, errors carried over as
/// `from_toml` carries its own.
fn via_table<T: DeserializeOwned>(text: &str) -> Result<T, toml::de::Error> {
    let table: toml::Table = toml::from_str(text)?;
    T::deserialize(table).map_err(<toml::de::Error as serde::de::Error>::custom)
}

fn same<T: DeserializeOwned + PartialEq + Debug>(text: &str) -> bool {
    let ours = vgpu_plan::from_toml::<T>(text).map_err(|e| e.to_string());
    let reference = via_table::<T>(text).map_err(|e| e.to_string());
    assert_eq!(ours, reference, "for:\n{text}");
    ours.is_ok()
}

const WRONG: &[&str] = &[
    "\"x\"",
    "\"\"",
    "1",
    "300",
    "-1",
    "1.5",
    "true",
    "1979-05-27T07:32:00Z",
    "[]",
    "[1]",
    "[\"a\", 2]",
    "{}",
    "{ a = 1 }",
    "{ native = {} }",
    "{ native = [] }",
    "{ native = 1 }",
    "{ native = {}, unlock = {} }",
    "[{ path = \"\", sha256 = \"00\", size = 1 }]",
];

/// `text` as it is, then with each `key = value` line's value replaced by
/// every [`WRONG`] value, the line dropped, and an unknown key after it.
/// Returns how many variants were read successfully.
fn variants<T: DeserializeOwned + PartialEq + Debug>(text: &str) -> usize {
    assert!(same::<T>(text), "the fixture itself must read");
    let lines: Vec<&str> = text.lines().collect();
    let mut accepted = 0;
    for (i, line) in lines.iter().enumerate() {
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        let with = |replacement: Option<String>| {
            let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            match replacement {
                Some(r) => out[i] = r,
                None => {
                    out.remove(i);
                }
            }
            out.join("\n") + "\n"
        };
        for value in WRONG {
            accepted += usize::from(same::<T>(&with(Some(format!("{key} = {value}")))));
        }
        accepted += usize::from(same::<T>(&with(None)));
        accepted += usize::from(same::<T>(&with(Some(format!("{line}\nunknown-key = 1")))));
    }
    accepted
}

#[test]
fn plans_read_and_fail_as_through_toml_table() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/plans");
    let mut plans = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        variants::<Plan>(&text);
        plans += 1;
    }
    assert!(
        plans >= 10,
        "only {plans} plan fixtures in {}",
        dir.display()
    );
}

#[test]
fn a_manifest_reads_and_fails_as_through_toml_table() {
    let text = r#"schema = 2
name = "demo"

[[entry]]
path = "etc/systemd/system/multi-user.target.wants/vgpu-firstboot.service"
type = "symlink"
mode = "0777"
uid = 0
gid = 0
target = "../vgpu-firstboot.service"

[[entry]]
path = "usr/local/sbin"
type = "dir"
mode = "0755"
uid = 0
gid = 0

[[entry]]
path = "usr/local/sbin/vgpu-firstboot"
type = "file"
mode = "0755"
uid = 0
gid = 0
size = 36
sha256 = "1706899d43583aeb94329bb08987cb477ef62158b15de8af058fb549f6409a7c"
"#;
    // Values of the right type still read (a mode or a name of "x").
    assert!(variants::<Manifest>(text) > 0);
}

#[test]
fn a_compat_table_reads_and_fails_as_through_toml_table() {
    let text = r#"schema = 1
source = "gpu_info.db sha256 00, corrections data/gpu_info_corrections.csv"

[[gpu]]
device = "1e07"
name = "NVIDIA GeForce RTX 2080 Ti"
chip = "TU102"
support = "unlock"
majors = [17, 16]

[[gpu]]
device = "20b0"
name = "NVIDIA A100"
chip = "GA100"
support = "native"
majors = [18, 17]
correction = "NVIDIA lists it"
"#;
    assert!(variants::<CompatTable>(text) > 0);
}

/// Errors deep in the tree name the whole key path.
#[test]
fn errors_name_the_key_path() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/plans/unlock-pve8-pin65.toml"),
    )
    .unwrap()
    .replace("series = \"6.5\"", "series = 6");
    let err = vgpu_plan::from_toml::<Plan>(&text).unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid type: integer `6`, expected a string\nin `host.kernel-pin.series`\n\n"
    );
}

/// A struct is read from a table only: `toml` also takes an array of its
/// fields in order (no plan is written so), which `from_toml` refuses with
/// the error `toml` gives any other value that is not a table.
#[test]
fn a_struct_is_read_from_a_table_only() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/plans/demo.toml"),
    )
    .unwrap();
    let start = text.find("[agent]\n").unwrap();
    let end = start + text[start..].find("\n\n").unwrap();
    let with_agent = |value: &str| format!("agent = {value}\n{}{}", &text[..start], &text[end..]);

    let as_array = with_agent("[2, false, 3600]");
    assert!(via_table::<Plan>(&as_array).is_ok(), "toml reads it");
    assert_eq!(
        vgpu_plan::from_toml::<Plan>(&as_array)
            .unwrap_err()
            .to_string(),
        "invalid type: sequence, expected struct AgentPlan\nin `agent`\n\n"
    );
    for value in ["1979-05-27T07:32:00Z", "\"x\"", "1", "1.5", "true"] {
        let other = with_agent(value);
        assert!(!same::<Plan>(&other), "agent = {value} must fail");
    }
}

/// `agent.command-timeout` is spelled as in the profile; a plan baked
/// before the rename (an installed bundle, the state's archived plan) says
/// `command-timeout-secs` and still loads, and writing emits the new key.
#[test]
fn the_command_timeout_reads_in_both_spellings_and_writes_the_new_one() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/plans/licensing-external.toml"),
    )
    .unwrap();
    assert!(text.contains("\ncommand-timeout = 7200\n"), "{text}");
    let old = text.replace("\ncommand-timeout = ", "\ncommand-timeout-secs = ");
    for spelling in [&text, &old] {
        let plan = Plan::from_toml(spelling).unwrap();
        assert_eq!(plan.agent.command_timeout_secs, 7200);
        assert!(same::<Plan>(spelling));
    }
    assert_eq!(
        Plan::from_toml(&old).unwrap(),
        Plan::from_toml(&text).unwrap()
    );
    let written = Plan::from_toml(&old).unwrap().to_toml();
    assert!(written.contains("\ncommand-timeout = 7200\n"), "{written}");
    assert!(!written.contains("command-timeout-secs"), "{written}");
    // Both at once is a duplicate key, not a silent choice.
    let both = text.replace(
        "\ncommand-timeout = 7200\n",
        "\ncommand-timeout = 7200\ncommand-timeout-secs = 60\n",
    );
    assert!(Plan::from_toml(&both).is_err());
}

/// `host.kernel-args` is spelled as in the profile; plans baked before say
/// `kernel-args-extra` and still load, and writing emits the new key.
#[test]
fn the_kernel_args_read_in_both_spellings_and_write_the_new_one() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/plans/demo.toml"),
    )
    .unwrap()
    .replace("\nkernel-args = []\n", "\nkernel-args = [\"quiet\"]\n");
    assert!(text.contains("\nkernel-args = [\"quiet\"]\n"), "{text}");
    let old = text.replace("\nkernel-args = ", "\nkernel-args-extra = ");
    for spelling in [&text, &old] {
        let plan = Plan::from_toml(spelling).unwrap();
        assert_eq!(plan.host.kernel_args_extra, ["quiet"]);
        assert!(same::<Plan>(spelling));
    }
    let written = Plan::from_toml(&old).unwrap().to_toml();
    assert!(
        written.contains("\nkernel-args = [\"quiet\"]\n"),
        "{written}"
    );
    assert!(!written.contains("kernel-args-extra"), "{written}");
    let both = text.replace(
        "\nkernel-args = [\"quiet\"]\n",
        "\nkernel-args = [\"quiet\"]\nkernel-args-extra = []\n",
    );
    assert!(Plan::from_toml(&both).is_err());
}
