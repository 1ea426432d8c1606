//! The licensing step with a recording runner: what it writes, in which
//! order it runs what, what it refuses, and the `licensing` command. The
//! real FastAPI-DLS under podman is `licensing_podman.rs`.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use support::step_env::*;
use vgpu_firstboot::agent::host::StepOutcome;
use vgpu_firstboot::agent::steps;
use vgpu_firstboot::runner::Response;
use vgpu_firstboot::sha256::sha256_hex;
use vgpu_plan::layout::{PAYLOAD_DIR, PLAN_FILE};
use vgpu_plan::plan::{PayloadFile, StepKind, licensing_paths as lp};

mod support {
    pub mod step_env;
}

const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.dGVzdCB0b2tlbg.c2ln\n";
const FINGERPRINT: &str =
    "SHA1 Fingerprint=01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67\n";

fn mode(env: &Env, rel: &str) -> u32 {
    fs::metadata(env.at(rel)).unwrap().permissions().mode() & 0o777
}

/// Puts `bytes` in the payload as the plan's token (or image).
fn payload(env: &Env, path: &str, bytes: &[u8]) -> PayloadFile {
    env.write(&format!("{PAYLOAD_DIR}/{path}"), bytes);
    PayloadFile {
        path: path.into(),
        sha256: sha256_hex(bytes).parse().unwrap(),
        size: bytes.len() as u64,
    }
}

fn external() -> Env {
    let mut env = Env::new("pve8-grub", "licensing-external");
    let token = payload(
        &env,
        "licensing/client_configuration_token.tok",
        TOKEN.as_bytes(),
    );
    env.plan.licensing.token = Some(token);
    env
}

#[test]
fn external_places_the_token_checks_the_dls_and_writes_the_guest_scripts() {
    let mut env = external();
    assert_eq!(env.run(steps::licensing::run).unwrap(), StepOutcome::Done);
    assert_eq!(
        env.commands(),
        ["openssl s_client -connect 10.0.0.5:443 -servername 10.0.0.5 -brief"]
    );
    assert_eq!(env.read(lp::TOKEN), TOKEN);
    assert_eq!(mode(&env, lp::TOKEN), 0o600);
    assert_eq!(mode(&env, lp::DIR), 0o700);
    assert_eq!(mode(&env, lp::GUEST_LINUX), 0o700);
    assert_eq!(mode(&env, lp::GUEST_WINDOWS), 0o600);
    let linux = env.read(lp::GUEST_LINUX);
    assert!(linux.starts_with("#!/bin/bash\n"));
    assert!(linux.contains(&format!("<<'VGPU_BAKE_TOKEN'\n{TOKEN}VGPU_BAKE_TOKEN\n")));
    assert!(linux.contains("echo 'FeatureType=1' >>\"$conf\""));
    assert!(linux.contains("the DLS at 10.0.0.5:443"));
    let windows = env.read(lp::GUEST_WINDOWS);
    assert!(windows.contains(&format!("-Value '{}' -NoNewline", TOKEN.trim())));
    assert!(windows.contains("Restart-Service NVDisplay.ContainerLocalSystem"));

    // Again: the DLS is asked again, nothing is rewritten.
    assert_eq!(env.run(steps::licensing::run).unwrap(), StepOutcome::Done);
    assert_eq!(env.commands().len(), 2);
    assert!(!env.logged("licensing script"), "{:?}", env.log);
    assert!(!env.logged("client configuration token"), "{:?}", env.log);
}

#[test]
fn external_fails_naming_the_dls_when_it_does_not_answer() {
    let mut env = external();
    env.runner.respond(
        "openssl",
        &["s_client"],
        Response::exit(1).stderr("connect:errno=111"),
    );
    let why = reason(env.run(steps::licensing::run));
    assert!(
        why.contains("the DLS at 10.0.0.5:443 does not answer"),
        "{why}"
    );
    assert!(why.contains("connect:errno=111"), "{why}");
    assert!(why.contains("vgpu-firstboot retry licensing"), "{why}");
    assert!(!env.at(lp::GUEST_LINUX).exists());
}

#[test]
fn external_refuses_a_token_that_is_not_the_baked_one() {
    let mut env = external();
    env.write(
        &format!("{PAYLOAD_DIR}/licensing/client_configuration_token.tok"),
        "eyJzd2FwcGVk.x.y\n",
    );
    let why = reason(env.run(steps::licensing::run));
    assert!(why.contains("is not the token that was baked"), "{why}");
    assert!(env.commands().is_empty());
    assert!(!env.at(lp::TOKEN).exists());
}

fn fastapi() -> Env {
    let mut env = Env::new("pve8-grub", "licensing-fastapi");
    let image = payload(&env, "licensing/fastapi-dls.oci.tar", b"stand-in archive");
    env.plan.licensing.image = Some(image);
    env
}

/// [`fastapi`] on a host whose keys an earlier run made.
fn fastapi_with_keys() -> Env {
    let env = fastapi();
    for f in [
        "webserver.key",
        "webserver.crt",
        "instance.private.pem",
        "instance.public.pem",
    ] {
        env.write(&format!("{}/{f}", lp::CERT_DIR), "made earlier");
    }
    env
}

fn tag(env: &Env) -> String {
    let sha = env
        .plan
        .licensing
        .image
        .as_ref()
        .unwrap()
        .sha256
        .to_string();
    format!("localhost/vgpu-bake/fastapi-dls:{}", &sha[..12])
}

#[test]
fn fastapi_dls_stops_when_openssl_leaves_no_key() {
    let mut env = fastapi();
    env.runner
        .respond("/usr/bin/podman", &["image", "exists"], Response::exit(1))
        .respond(
            "/usr/bin/podman",
            &["load"],
            Response::ok().stdout("Loaded image: localhost/x:1\n"),
        );
    let why = reason(env.run(steps::licensing::run));
    assert!(why.contains("openssl did not leave"), "{why}");
    assert!(!env.at(lp::UNIT).exists());
    let cmds = env.commands();
    assert!(
        cmds[2].starts_with("/usr/bin/podman tag localhost/x:1 "),
        "{cmds:?}"
    );
    assert!(
        cmds[3].starts_with("openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=pve1.example.lan -addext subjectAltName=DNS:pve1.example.lan,IP:127.0.0.1 -keyout "),
        "{cmds:?}"
    );
}

#[test]
fn fastapi_dls_runs_in_order_and_then_changes_nothing() {
    let mut env = fastapi_with_keys();
    let tag = tag(&env);
    env.runner
        .respond_once("/usr/bin/podman", &["image", "exists"], Response::exit(1))
        .respond(
            "/usr/bin/podman",
            &["load"],
            Response::ok().stdout("Getting image source signatures\nLoaded image: localhost/x:1\n"),
        )
        .respond("openssl", &["x509"], Response::ok().stdout(FINGERPRINT))
        .respond(
            "wget",
            &["https://127.0.0.1:9443/-/client-token"],
            Response::ok().stdout(TOKEN),
        )
        .respond_once("systemctl", &["is-enabled"], Response::exit(1));
    assert_eq!(env.run(steps::licensing::run).unwrap(), StepOutcome::Done);
    let root = env.root.display().to_string();
    let ca = format!("--ca-certificate={root}/{}/webserver.crt", lp::CERT_DIR);
    assert_eq!(
        env.commands(),
        [
            format!("/usr/bin/podman image exists {tag}"),
            format!("/usr/bin/podman load -i {root}/{PAYLOAD_DIR}/licensing/fastapi-dls.oci.tar"),
            format!("/usr/bin/podman tag localhost/x:1 {tag}"),
            "systemctl daemon-reload".into(),
            format!("systemctl is-enabled {}", lp::UNIT_NAME),
            format!("systemctl enable --now {}", lp::UNIT_NAME),
            format!("wget -q -O - --timeout=5 --tries=1 {ca} https://127.0.0.1:9443/-/health"),
            format!(
                "wget -q -O - --timeout=5 --tries=1 {ca} https://127.0.0.1:9443/-/client-token"
            ),
            format!(
                "openssl x509 -in {root}/{}/webserver.crt -noout -fingerprint -sha1",
                lp::CERT_DIR
            ),
        ]
    );
    let unit = env.read(lp::UNIT);
    assert!(unit.contains("-p 9443:443 "), "{unit}");
    assert!(unit.contains("-e TZ=Europe/Berlin -e DLS_URL=pve1.example.lan -e DLS_PORT=9443 -e LEASE_EXPIRE_DAYS=30 "), "{unit}");
    assert!(
        unit.contains(&format!(" {tag} uvicorn main:app ")),
        "{unit}"
    );
    assert_eq!(env.read(lp::TOKEN), TOKEN);
    assert_eq!(mode(&env, lp::TOKEN), 0o600);
    assert_eq!(mode(&env, lp::CERT_DIR), 0o700);
    assert_eq!(mode(&env, lp::DB_DIR), 0o700);
    let linux = env.read(lp::GUEST_LINUX);
    assert!(
        linux.contains("'https://pve1.example.lan:9443/-/client-token'"),
        "{linux}"
    );
    assert!(linux.contains("made earlier\nVGPU_BAKE_CA"), "{linux}");
    let windows = env.read(lp::GUEST_WINDOWS);
    assert!(
        windows.contains("$pin = '0123456789ABCDEF0123456789ABCDEF01234567'"),
        "{windows}"
    );

    // Again: the image is there, the unit unchanged and running.
    let before = env.commands().len();
    assert_eq!(env.run(steps::licensing::run).unwrap(), StepOutcome::Done);
    let again: Vec<String> = env.commands()[before..].to_vec();
    assert_eq!(again[0], format!("/usr/bin/podman image exists {tag}"));
    assert!(
        !again.iter().any(|c| c.contains(" load ")
            || c.contains("daemon-reload")
            || c.contains("enable --now")),
        "{again:?}"
    );
}

#[test]
fn fastapi_dls_without_an_address_says_where_to_set_one() {
    let mut env = fastapi();
    env.plan.licensing.server = None;
    let why = reason(env.run(steps::licensing::run));
    assert!(
        why.contains("/etc/hosts has no non-loopback address"),
        "{why}"
    );
    assert!(why.contains("set `licensing.server`"), "{why}");
    assert!(env.commands().is_empty());
    env.write("etc/hostname", "pve1\n");
    env.write("etc/hosts", "127.0.0.1 localhost\n10.1.2.3 pve1.lan pve1\n");
    assert!(
        env.preview(StepKind::Licensing)
            .iter()
            .any(|l| l.contains("DLS_URL=10.1.2.3")),
        "{:?}",
        env.preview(StepKind::Licensing)
    );
}

/// The health wait comes from `VGPU_FIRSTBOOT_DLS_WAIT`: this test runs
/// itself again in a child process with it at 0 s (one try), so no test
/// changes its own environment.
#[test]
fn fastapi_dls_times_out_naming_the_unit() {
    if std::env::var("VGPU_FIRSTBOOT_DLS_WAIT").as_deref() != Ok("0") {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "fastapi_dls_times_out_naming_the_unit",
                "--nocapture",
            ])
            .env("VGPU_FIRSTBOOT_DLS_WAIT", "0")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "{text}");
        return;
    }
    let mut env = fastapi_with_keys();
    env.runner
        .respond(
            "/usr/bin/podman",
            &["load"],
            Response::ok().stdout("Loaded image: x:1\n"),
        )
        .respond(
            "wget",
            &["https://127.0.0.1:9443/-/health"],
            Response::exit(4).stderr("Connection refused"),
        );
    let why = reason(env.run(steps::licensing::run));
    assert!(why.contains("Connection refused"), "{why}");
    assert!(why.contains("did not answer /-/health in time"), "{why}");
    assert!(
        why.contains("journalctl -u vgpu-bake-fastapi-dls.service"),
        "{why}"
    );
    assert!(!env.at(lp::GUEST_LINUX).exists());
}

#[test]
fn post_check_asks_the_dls_again() {
    let mut env = external();
    env.runner
        .respond("mdevctl", &["types"], Response::ok().stdout("nvidia-222\n"))
        .respond(
            "openssl",
            &["s_client"],
            Response::exit(1).stderr("connect:errno=113"),
        );
    let why = reason(env.run(steps::post_check::run));
    assert!(why.contains("10.0.0.5:443 does not answer"), "{why}");
    assert!(env.commands().iter().any(|c| c == "mdevctl types"));
}

#[test]
fn the_licensing_command_says_where_things_are_and_what_a_guest_does() {
    let mut env = external();
    env.write(PLAN_FILE, env.plan.to_toml());
    let show = |env: &Env| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_vgpu-firstboot"))
            .args(["--root", env.root.to_str().unwrap(), "licensing"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        String::from_utf8(o.stdout).unwrap()
    };
    let before = show(&env);
    assert!(
        before.contains("licensing: external DLS at https://10.0.0.5:443"),
        "{before}"
    );
    assert!(
        before.contains(&format!("client token: /{} (not there yet", lp::TOKEN)),
        "{before}"
    );
    assert_eq!(env.run(steps::licensing::run).unwrap(), StepOutcome::Done);
    let after = show(&env);
    assert!(
        after.contains(&format!("client token: /{} (0600, a secret)", lp::TOKEN)),
        "{after}"
    );
    assert!(
        after.contains(&format!("  Linux:   /{}\n", lp::GUEST_LINUX)),
        "{after}"
    );
    assert!(after.contains("sudo bash license_linux.sh"), "{after}");
    assert!(
        after.contains("powershell -ExecutionPolicy Bypass -File license_windows.ps1"),
        "{after}"
    );
    assert!(
        !after.contains(TOKEN.trim()),
        "the command never prints the token: {after}"
    );

    // --json: the same facts, and still no token.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_vgpu-firstboot"))
        .args(["--root", env.root.to_str().unwrap(), "licensing", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(!text.contains(TOKEN.trim()), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["schema"], 1);
    assert_eq!(v["mode"], "external");
    assert_eq!(v["url"], "https://10.0.0.5:443");
    assert_eq!(v["token"]["path"], format!("/{}", lp::TOKEN));
    assert_eq!(v["token"]["present"], true);
    assert_eq!(v["guest-linux"]["path"], format!("/{}", lp::GUEST_LINUX));
    assert_eq!(v["guest-linux"]["present"], true);
    assert_eq!(v["guest-windows"]["present"], true);
    assert!(v.get("unit").is_none(), "external: no local DLS unit: {v}");
}
