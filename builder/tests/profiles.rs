//! Golden pairs: `tests/profiles/<case>.toml` -> `<case>.plan.toml` (the
//! resolved stage with its payload sources, as `vgpu-bake plan` prints it
//! before anything is fetched) or `<case>.error` (the exact error text).
//!
//! `VGPU_BAKE_BLESS=1 cargo test -p vgpu-bake --test profiles` rewrites the
//! expectations; review the diff before committing.

use std::path::{Path, PathBuf};

use vgpu_bake::bake::{PayloadBaker, baked_plan};
use vgpu_bake::gpudb::GpuDb;
use vgpu_bake::hash::digest_bytes;
use vgpu_bake::profile::Profile;
use vgpu_bake::registry::Registry;
use vgpu_bake::resolve::{
    self, DebSource, LicensingSource, Resolved, ResolvedDriver, ResolvedUnlock,
};
use vgpu_plan::plan::{DriverPlan, PatchRecord, PayloadFile, Plan, UnlockPlan};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Resolves one profile and checks the files it names, as `validate`
/// does; the path in messages is workspace-relative, so the files are
/// looked up from the workspace (every test here sets it as the current
/// directory: the same one for all, so they may run in parallel).
fn resolved(rel: &Path) -> Result<Resolved, String> {
    std::env::set_current_dir(workspace()).unwrap();
    let profile = Profile::load(rel).map_err(|e| e.to_string())?;
    let db = GpuDb::builtin().unwrap();
    let resolved =
        resolve::resolve(&profile, rel, &Registry::builtin(), &db).map_err(|e| e.to_string())?;
    resolve::check_files(&resolved, rel).map_err(|e| e.to_string())?;
    Ok(resolved)
}

fn outcome(rel: &Path) -> Result<String, String> {
    resolved(rel).map(|r| toml::to_string(&r).unwrap())
}

#[test]
fn golden_profiles() {
    let dir = workspace().join("tests/profiles");
    let bless = std::env::var_os("VGPU_BAKE_BLESS").is_some();
    let mut cases: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".toml")
                .filter(|s| !s.ends_with(".plan"))
                .map(String::from)
        })
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 20,
        "expected the golden cases in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let rel = PathBuf::from(format!("tests/profiles/{case}.toml"));
        let plan_file = dir.join(format!("{case}.plan.toml"));
        let error_file = dir.join(format!("{case}.error"));
        let got = outcome(&rel);
        if bless {
            let _ = std::fs::remove_file(&plan_file);
            let _ = std::fs::remove_file(&error_file);
            match &got {
                Ok(plan) => std::fs::write(&plan_file, plan).unwrap(),
                Err(e) => std::fs::write(&error_file, format!("{e}\n")).unwrap(),
            }
            continue;
        }
        let expected = match (
            std::fs::read_to_string(&plan_file),
            std::fs::read_to_string(&error_file),
        ) {
            (Ok(p), Err(_)) => Ok(p),
            (Err(_), Ok(e)) => Err(e.trim_end_matches('\n').to_string()),
            _ => {
                failures.push(format!(
                    "{case}: needs exactly one of {case}.plan.toml or {case}.error"
                ));
                continue;
            }
        };
        if got != expected {
            failures.push(format!(
                "{case}:\n--- expected\n{}\n--- got\n{}",
                show(&expected),
                show(&got)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden case(s) differ:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

fn show(r: &Result<String, String>) -> String {
    match r {
        Ok(p) => format!("plan:\n{p}"),
        Err(e) => format!("error: {e}"),
    }
}

/// The shipped example that is a template: it names the operator's own
/// vgpu_unlock files and a placeholder hash, so it resolves only once they
/// are filled in.
const TEMPLATE: &str = "unlock-amd-rtx2080ti.toml";

/// Every shipped example profile resolves, except the unlock template,
/// which says what to fill in.
#[test]
fn example_profiles_resolve() {
    let dir = workspace().join("profiles");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if let Some(_case) = name.strip_suffix(".toml") {
            let rel = PathBuf::from(format!("profiles/{name}"));
            if name == TEMPLATE {
                let e = outcome(&rel).unwrap_err();
                assert_eq!(
                    e,
                    "profiles/unlock-amd-rtx2080ti.toml: `unlock.library-sha256` is 64 zeros, the example's placeholder and not a checksum: run `sha256sum` on your libvgpu_unlock_rs.so and paste the hash"
                );
            } else {
                outcome(&rel).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            n += 1;
        }
    }
    assert!(n >= 5, "expected the five example profiles, found {n}");
}

/// The unlock template with its placeholders filled in resolves, once its
/// files are next to it.
#[test]
fn the_unlock_template_resolves_once_filled_in() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(workspace().join("profiles").join(TEMPLATE)).unwrap();
    let lib = b"stand-in libvgpu_unlock_rs.so";
    let text = text.replace(&"0".repeat(64), &digest_bytes(lib).sha256);
    let profile = dir.path().join("unlock.toml");
    std::fs::write(&profile, text).unwrap();
    let db = GpuDb::builtin().unwrap();
    let load = || {
        let p = Profile::load(&profile).unwrap();
        let r = resolve::resolve(&p, &profile, &Registry::builtin(), &db).unwrap();
        resolve::check_files(&r, &profile).map(|()| r)
    };
    let e = load().unwrap_err().to_string();
    assert!(
        e.contains("`unlock.patch`: ")
            && e.contains("unlock/550.163.02.patch\" does not exist: put the file there"),
        "{e}"
    );
    std::fs::create_dir(dir.path().join("unlock")).unwrap();
    std::fs::write(dir.path().join("unlock/550.163.02.patch"), "patch").unwrap();
    std::fs::write(dir.path().join("unlock/libvgpu_unlock_rs.so"), lib).unwrap();
    let e = load().unwrap_err().to_string();
    assert!(
        e.contains("`licensing.image`: ")
            && e.contains("dls/fastapi-dls.oci.tar\" does not exist: put the file there"),
        "{e}"
    );
    std::fs::create_dir(dir.path().join("dls")).unwrap();
    std::fs::write(dir.path().join("dls/fastapi-dls.oci.tar"), "archive").unwrap();
    let r = load().unwrap();
    assert_eq!(
        r.unlock.unwrap().library.sha256.as_str(),
        digest_bytes(lib).sha256
    );
}

/// Bakes with stand-in payload: each file's digest is that of the text
/// `stand-in <payload path>`, pins the profile or registry gave are kept
/// (and the driver's md5 is only a declared one).
struct StandIn;

fn stand_in(path: &str) -> PayloadFile {
    let d = digest_bytes(format!("stand-in {path}").as_bytes());
    PayloadFile {
        path: path.to_string(),
        sha256: d.sha256(),
        size: d.size,
    }
}

impl PayloadBaker for StandIn {
    type Error = std::convert::Infallible;

    fn driver(&mut self, d: ResolvedDriver) -> Result<DriverPlan, Self::Error> {
        let original = digest_bytes(format!("stand-in {}", d.filename).as_bytes());
        let installer = match &d.patch {
            Some(_) => stand_in(&format!(
                "driver/{}-custom.run",
                d.filename.trim_end_matches(".run")
            )),
            None => stand_in(&format!("driver/{}", d.filename)),
        };
        Ok(DriverPlan {
            // Recorded only when declared, as the bake does.
            md5: d.md5.clone(),
            sha256: d.sha256.clone().unwrap_or_else(|| original.sha256()),
            size: original.size,
            installer,
            patch: d.patch.as_ref().map(|p| PatchRecord {
                file: p.file.clone(),
                sha256: stand_in(&p.file).sha256,
            }),
            release: d.release,
            version: d.version,
            filename: d.filename,
            install_args: d.install_args,
            services: d.services,
            sriov_unit: d.sriov_unit,
        })
    }

    fn unlock(&mut self, u: ResolvedUnlock) -> Result<UnlockPlan, Self::Error> {
        let mut library = stand_in(&u.library.path);
        library.sha256 = u.library.sha256;
        Ok(UnlockPlan {
            library,
            library_path: u.library_path,
            profile_override: u.profile_override,
        })
    }

    fn deb(&mut self, deb: DebSource) -> Result<PayloadFile, Self::Error> {
        Ok(stand_in(&deb.path))
    }

    fn token(&mut self, token: LicensingSource) -> Result<PayloadFile, Self::Error> {
        Ok(stand_in(&token.path))
    }

    fn image(&mut self, image: LicensingSource) -> Result<PayloadFile, Self::Error> {
        let mut file = stand_in(&image.path);
        file.sha256 = image.sha256.expect("resolve pins the image");
        Ok(file)
    }
}

/// `tests/plans/<case>.toml`: each resolvable golden profile baked with
/// stand-in payload digests, the baked plans the agent's tests start from.
/// Blessed with the profile goldens.
#[test]
fn baked_plan_fixtures() {
    let profiles = workspace().join("tests/profiles");
    let plans = workspace().join("tests/plans");
    let bless = std::env::var_os("VGPU_BAKE_BLESS").is_some();
    let mut failures = Vec::new();
    let mut made = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(&profiles).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        let Some(case) = name.strip_suffix(".plan.toml") else {
            continue;
        };
        let rel = PathBuf::from(format!("tests/profiles/{case}.toml"));
        let resolved = resolved(&rel).unwrap_or_else(|e| panic!("{case}: {e}"));
        let Ok(plan) = baked_plan(resolved, &mut StandIn);
        let text = format!(
            "# {case}.toml baked with stand-in payload digests (builder/tests/profiles.rs):\n# a fixture for the agent's tests, which put real files and digests in.\n{}",
            plan.to_toml()
        );
        assert_eq!(Plan::from_toml(&text).unwrap(), plan, "{case} round trip");
        let file = plans.join(format!("{case}.toml"));
        made.insert(format!("{case}.toml"));
        if bless {
            std::fs::create_dir_all(&plans).unwrap();
            std::fs::write(&file, &text).unwrap();
        } else if std::fs::read_to_string(&file).ok().as_deref() != Some(text.as_str()) {
            failures.push(format!("{} differs:\n{text}", file.display()));
        }
    }
    for e in std::fs::read_dir(&plans).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if !made.contains(&name) {
            failures.push(format!(
                "tests/plans/{name} has no tests/profiles/*.plan.toml"
            ));
        }
    }
    assert!(made.len() >= 10, "expected the golden plans");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
