//! The guest setup scripts the licensing step writes: bash for Linux
//! guests, PowerShell for Windows guests. Pure text.
//!
//! Each script puts a client configuration token where the NVIDIA guest
//! driver looks for one, sets `FeatureType=1` (NVIDIA vGPU) in the guest's
//! gridd settings, restarts the licensing service and shows the licence
//! state. With an external DLS the token is embedded; with FastAPI-DLS the
//! script fetches a fresh one from `/-/client-token`, trusting only this
//! host's certificate (the seed's scripts used `--insecure`).

/// Where the token comes from.
pub enum Token<'a> {
    /// The external DLS's token text, embedded.
    Embedded(&'a str),
    /// Fetched from FastAPI-DLS on this host.
    Fetch {
        /// `https://ADDR:PORT/-/client-token`.
        url: &'a str,
        /// The server's certificate (PEM), the Linux script's only CA.
        ca_pem: &'a str,
        /// Its SHA-1 thumbprint (hex, no colons), the Windows script's pin.
        thumbprint: &'a str,
    },
}

/// The Linux guest script (bash, run as root in the guest).
pub fn linux(token: &Token, dls: &str) -> String {
    let get = match token {
        Token::Embedded(t) => format!(
            "cat >\"$tok\" <<'VGPU_BAKE_TOKEN'\n{}\nVGPU_BAKE_TOKEN\n",
            t.trim_end()
        ),
        Token::Fetch { url, ca_pem, .. } => format!(
            "ca=$(mktemp)\ntrap 'rm -f \"$ca\"' EXIT\ncat >\"$ca\" <<'VGPU_BAKE_CA'\n{}\nVGPU_BAKE_CA\ncurl --fail --silent --show-error --cacert \"$ca\" -o \"$tok\" '{url}'\n",
            ca_pem.trim_end()
        ),
    };
    format!(
        r#"#!/bin/bash
# Written by vgpu-firstboot (vgpu-bake): licenses this Linux guest's NVIDIA
# vGPU driver against {dls}.
# Copy it into the guest and run it as root: bash license_linux.sh
set -euo pipefail
[ "$(id -u)" -eq 0 ] || {{ echo "license_linux.sh: run as root" >&2; exit 1; }}
dir=/etc/nvidia/ClientConfigToken
install -d -m 0755 "$dir"
umask 077
tok="$dir/client_configuration_token_$(date +%d-%m-%Y-%H-%M-%S).tok"
{get}chmod 0744 "$tok"
conf=/etc/nvidia/gridd.conf
if [ ! -f "$conf" ]; then
  if [ -f /etc/nvidia/gridd.conf.template ]; then cp /etc/nvidia/gridd.conf.template "$conf"; else : >"$conf"; fi
fi
sed -i '/^[[:space:]]*FeatureType[[:space:]]*=/d' "$conf"
echo 'FeatureType=1' >>"$conf"
systemctl restart nvidia-gridd
sleep 5
nvidia-smi -q | grep -i -A2 'license' || true
echo "license_linux.sh: token $tok in place; nvidia-gridd restarted"
"#
    )
}

/// The Windows guest script (PowerShell, run as Administrator).
pub fn windows(token: &Token, dls: &str) -> String {
    let get = match token {
        Token::Embedded(t) => format!(
            "Set-Content -Path $tok -Value '{}' -NoNewline -Encoding Ascii\n",
            t.trim_end()
        ),
        Token::Fetch {
            url, thumbprint, ..
        } => format!(
            "$pin = '{thumbprint}'\n[System.Net.ServicePointManager]::SecurityProtocol = [System.Net.SecurityProtocolType]::Tls12\n[System.Net.ServicePointManager]::ServerCertificateValidationCallback = {{ param($s, $cert, $chain, $errors) $cert.GetCertHashString() -eq $pin }}\nInvoke-WebRequest -UseBasicParsing -Uri '{url}' -OutFile $tok\n[System.Net.ServicePointManager]::ServerCertificateValidationCallback = $null\n"
        ),
    };
    format!(
        r#"# Written by vgpu-firstboot (vgpu-bake): licenses this Windows guest's
# NVIDIA vGPU driver against {dls}.
# Copy it into the guest and run it in an elevated PowerShell:
#   powershell -ExecutionPolicy Bypass -File license_windows.ps1
$ErrorActionPreference = 'Stop'
$dir = 'C:\Program Files\NVIDIA Corporation\vGPU Licensing\ClientConfigToken'
New-Item -ItemType Directory -Force -Path $dir | Out-Null
$tok = Join-Path $dir ("client_configuration_token_" + (Get-Date -Format 'dd-MM-yyyy-HH-mm-ss') + ".tok")
{get}$key = 'HKLM:\SOFTWARE\NVIDIA Corporation\Global\GridLicensing'
New-Item -Force -Path $key | Out-Null
New-ItemProperty -Force -Path $key -Name FeatureType -PropertyType DWord -Value 1 | Out-Null
Restart-Service NVDisplay.ContainerLocalSystem
Start-Sleep -Seconds 5
& nvidia-smi -q | Select-String -Context 0,2 'License'
Write-Output "license_windows.ps1: token $tok in place; NVDisplay.ContainerLocalSystem restarted"
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_token_is_quoted_and_feature_type_set() {
        let l = linux(&Token::Embedded("abc.def\n"), "dls.lan:443");
        assert!(
            l.contains("<<'VGPU_BAKE_TOKEN'\nabc.def\nVGPU_BAKE_TOKEN\n"),
            "{l}"
        );
        assert!(l.contains("echo 'FeatureType=1' >>\"$conf\""));
        assert!(!l.contains("curl"));
        let w = windows(&Token::Embedded("abc.def\n"), "dls.lan:443");
        assert!(w.contains("-Value 'abc.def' -NoNewline"), "{w}");
        assert!(w.contains("-Name FeatureType -PropertyType DWord -Value 1"));
    }

    #[test]
    fn the_fetched_token_trusts_only_this_hosts_certificate() {
        let t = Token::Fetch {
            url: "https://10.0.0.2:8443/-/client-token",
            ca_pem: "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n",
            thumbprint: "ABCDEF",
        };
        let l = linux(&t, "x");
        assert!(l.contains("--cacert \"$ca\" -o \"$tok\" 'https://10.0.0.2:8443/-/client-token'"));
        assert!(!l.contains("insecure"));
        let w = windows(&t, "x");
        assert!(w.contains("$pin = 'ABCDEF'"));
        assert!(w.contains("-Uri 'https://10.0.0.2:8443/-/client-token'"));
    }
}
