//! Where the secure-boot step keeps the module signing key pair it makes
//! on the host (never baked), which the driver installer signs with.

/// Directory of the key pair (mode 0700).
pub(super) const KEY_DIR: &str = "var/lib/vgpu-firstboot/secure-boot";
/// Private key, mode 0600.
pub(super) const KEY: &str = "var/lib/vgpu-firstboot/secure-boot/module-signing.key";
/// Self-signed certificate in DER, the form mokutil imports and the driver
/// installer takes.
pub(super) const DER: &str = "var/lib/vgpu-firstboot/secure-boot/module-signing.der";
