# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_vgpu_bake_global_optspecs
    string join \n q/quiet v/verbose h/help V/version
end

function __fish_vgpu_bake_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_vgpu_bake_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_vgpu_bake_using_subcommand
    set -l cmd (__fish_vgpu_bake_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c vgpu-bake -n "__fish_vgpu_bake_needs_command" -s q -l quiet -d 'Print only errors and warnings (and the JSON document with --json)'
complete -c vgpu-bake -n "__fish_vgpu_bake_needs_command" -s v -l verbose -d 'Print more on stderr: the bundle writer\'s phase timings, cache hits and misses, how each payload file was vouched for'
complete -c vgpu-bake -n "__fish_vgpu_bake_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vgpu-bake -n "__fish_vgpu_bake_needs_command" -s V -l version -d 'Print version'
complete -c vgpu-bake -n "__fish_vgpu_bake_needs_command" -f -a "validate" -d 'Check profiles: schema, releases, GPUs, licensing'
complete -c vgpu-bake -n "__fish_vgpu_bake_needs_command" -f -a "check" -d 'Check profiles against facts captured on target hosts (`vgpu-firstboot facts --json > FILE` on each) with the agent\'s host gate: the Debian release of the Proxmox VE major, a Proxmox VE host, every `[[gpu]]` present (by id, and by address when given), each card\'s class against the mode, vGPU possible. Prints every reason per (profile, facts) pair; exit code 1 if any pair fails'
complete -c vgpu-bake -n "__fish_vgpu_bake_needs_command" -f -a "plan" -d 'Print the resolved plan: every choice concrete, steps in order'
complete -c vgpu-bake -n "__fish_vgpu_bake_needs_command" -f -a "fetch" -d 'Download (or import) the profile\'s driver into the cache and verify it'
complete -c vgpu-bake -n "__fish_vgpu_bake_needs_command" -f -a "bake" -d 'Bake each profile into OUT/<name>.cpio.zst (+ .sha256)'
complete -c vgpu-bake -n "__fish_vgpu_bake_needs_command" -f -a "inspect" -d 'List a bundle\'s entries and verify every file against its manifest, and report its signature'
complete -c vgpu-bake -n "__fish_vgpu_bake_needs_command" -f -a "install" -d 'Lay a bundle onto a root directory (e.g. a mounted new host)'
complete -c vgpu-bake -n "__fish_vgpu_bake_needs_command" -f -a "hook" -d 'Make the first-boot hook for the Proxmox automated installer (`proxmox-auto-install-assistant prepare-iso --on-first-boot HOOK`): one executable of at most 1 MiB that, at the installed host\'s first boot, finds its bundle (paths, then labels, then URLs), verifies its sha256 (and signature, with --trusted-key) before writing anything, lays it as `install` does, installs the trusted keys and starts vgpu-firstboot.service'
complete -c vgpu-bake -n "__fish_vgpu_bake_needs_command" -f -a "keygen" -d 'Make an unencrypted minisign key pair for signing bundles: PREFIX.key (secret, mode 0600) and PREFIX.pub'
complete -c vgpu-bake -n "__fish_vgpu_bake_needs_command" -f -a "fleet" -d 'Bake a fleet: each distinct profile of INVENTORY.toml once into DIR/bundles/<sha256>.cpio.zst (+ .sha256), DIR/index.toml (which host takes which bundle) and DIR/first-boot-hook (the installer\'s first-boot executable, carrying the index). Any static web server can serve DIR'
complete -c vgpu-bake -n "__fish_vgpu_bake_needs_command" -f -a "answer" -d 'Print what the Proxmox automated installer\'s answer file needs for this profile: the [first-boot] section and the kernel arguments for the installer\'s boot line (which spare the agent its reboot)'
complete -c vgpu-bake -n "__fish_vgpu_bake_needs_command" -f -a "usb" -d 'Write an ext4 filesystem image (no partition table; made with `mkfs.ext4 -d`, no loop device) holding a bundle (and its .sha256) or a fleet directory, labelled for `--from-label`. Write it to a stick with `dd`'
complete -c vgpu-bake -n "__fish_vgpu_bake_needs_command" -f -a "guest-drivers" -d 'List the guest (VM) drivers of the bash installer\'s catalog: release, OS, version, file name, URL (or "no link published"), remarks. With --fetch, download one (--release and --os) into the driver cache as `fetch` does (cache, resume, retries); the catalog has no checksums, so it is recorded with the sha256 it had, printed'
complete -c vgpu-bake -n "__fish_vgpu_bake_needs_command" -f -a "gpus" -d 'Query the GPU compatibility database (with NVIDIA-sourced corrections)'
complete -c vgpu-bake -n "__fish_vgpu_bake_needs_command" -f -a "doctor" -d 'Check this build machine: the tools the commands run (GNU patch for unlock bakes, e2fsprogs for `usb`), the driver cache and its frame cache (sidecars, sizes, leftover partial and temporary files), and, for the profiles given, the free space their bakes need. One line per finding: ok, warn or fail, with what to do. Exit code 1 if any check fails (a warning does not)'
complete -c vgpu-bake -n "__fish_vgpu_bake_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand validate" -l gpu-db -d 'Use this gpu_info.db (upstream format) instead of the built-in one' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand validate" -l json -d 'Print one JSON document on stdout (docs/JSON.md), also on failure'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand validate" -s q -l quiet -d 'Print only errors and warnings (and the JSON document with --json)'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand validate" -s v -l verbose -d 'Print more on stderr: the bundle writer\'s phase timings, cache hits and misses, how each payload file was vouched for'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand validate" -s h -l help -d 'Print help'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand check" -l facts -d 'Facts files (`vgpu-firstboot facts --json` output), one or more' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand check" -l gpu-db -d 'Use this gpu_info.db (upstream format) instead of the built-in one' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand check" -l json -d 'Print one JSON document (docs/JSON.md) instead of the text'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand check" -s q -l quiet -d 'Print only errors and warnings (and the JSON document with --json)'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand check" -s v -l verbose -d 'Print more on stderr: the bundle writer\'s phase timings, cache hits and misses, how each payload file was vouched for'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand check" -s h -l help -d 'Print help'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand plan" -l cache -d 'Driver cache to read the verified driver\'s sha256 from' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand plan" -l gpu-db -d 'Use this gpu_info.db (upstream format) instead of the built-in one' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand plan" -l json -d 'Print JSON instead of TOML'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand plan" -s q -l quiet -d 'Print only errors and warnings (and the JSON document with --json)'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand plan" -s v -l verbose -d 'Print more on stderr: the bundle writer\'s phase timings, cache hits and misses, how each payload file was vouched for'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand plan" -s h -l help -d 'Print help'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand fetch" -l cache -d 'Driver cache directory [default: ~/.cache/vgpu-bake/drivers]' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand fetch" -l driver-file -d 'Use this driver file (downloaded by you) instead of downloading' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand fetch" -l sha256 -d 'Expected SHA-256 of the driver (needed when the registry has no md5)' -r
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand fetch" -l md5 -d 'Expected MD5 of the driver (for releases the registry has none for)' -r
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand fetch" -l url -d 'Download from this URL instead of the registry\'s' -r
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand fetch" -l gpu-db -d 'Use this gpu_info.db (upstream format) instead of the built-in one' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand fetch" -l json -d 'Print one JSON document on stdout (docs/JSON.md), also on failure'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand fetch" -s q -l quiet -d 'Print only errors and warnings (and the JSON document with --json)'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand fetch" -s v -l verbose -d 'Print more on stderr: the bundle writer\'s phase timings, cache hits and misses, how each payload file was vouched for'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand fetch" -s h -l help -d 'Print help'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand bake" -l out -d 'Output directory' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand bake" -l agent -d 'Agent binary to bake [default: the release vgpu-firstboot built next to this vgpu-bake]' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand bake" -l sign-key -d 'Sign the manifest with this minisign secret key (`keygen`, or `minisign -G -W`; an encrypted key reads its password from VGPU_BAKE_KEY_PASSWORD): the bundle then carries var/lib/vgpu-firstboot/manifest.toml.minisig' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand bake" -l cache -d 'Driver cache directory [default: ~/.cache/vgpu-bake/drivers]' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand bake" -l driver-file -d 'Use this driver file (downloaded by you) instead of downloading' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand bake" -l sha256 -d 'Expected SHA-256 of the driver (needed when the registry has no md5)' -r
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand bake" -l md5 -d 'Expected MD5 of the driver (for releases the registry has none for)' -r
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand bake" -l url -d 'Download from this URL instead of the registry\'s' -r
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand bake" -l gpu-db -d 'Use this gpu_info.db (upstream format) instead of the built-in one' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand bake" -l json -d 'Print one JSON document on stdout (docs/JSON.md), also on failure'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand bake" -s q -l quiet -d 'Print only errors and warnings (and the JSON document with --json)'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand bake" -s v -l verbose -d 'Print more on stderr: the bundle writer\'s phase timings, cache hits and misses, how each payload file was vouched for'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand bake" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand inspect" -l trusted-key -d 'Require a signature by this minisign public key (repeatable: any one of them); an unsigned or wrongly signed bundle is refused' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand inspect" -l json -d 'Print JSON'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand inspect" -s q -l quiet -d 'Print only errors and warnings (and the JSON document with --json)'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand inspect" -s v -l verbose -d 'Print more on stderr: the bundle writer\'s phase timings, cache hits and misses, how each payload file was vouched for'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand inspect" -s h -l help -d 'Print help'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand install" -l root -d 'Target root directory' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand install" -l trusted-key -d 'Require a signature by this minisign public key (repeatable: any one of them); an unsigned or wrongly signed bundle writes nothing' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand install" -l json -d 'Print one JSON document on stdout (docs/JSON.md), also on failure'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand install" -s q -l quiet -d 'Print only errors and warnings (and the JSON document with --json)'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand install" -s v -l verbose -d 'Print more on stderr: the bundle writer\'s phase timings, cache hits and misses, how each payload file was vouched for'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand install" -s h -l help -d 'Print help'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand hook" -l bundle -d 'The bundle (.cpio.zst) every host takes; checked now' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand hook" -l index -d 'A fleet index (`vgpu-bake fleet`\'s DIR/index.toml): each host takes its bundle by MAC, serial or UUID; every bundle is checked now, relative to the index\'s directory' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand hook" -l from-path -d 'A directory on the installed host holding the bundle (or the fleet directory\'s contents). Repeatable' -r
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand hook" -l from-label -d 'A filesystem label (1-16 of [A-Za-z0-9._-]), e.g. the USB stick `vgpu-bake usb --label` made: found as /dev/disk/by-label/LABEL and mounted read-only. Repeatable' -r
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand hook" -l from-url -d 'A base URL (http:// or https://) the bundle\'s file name is appended to, e.g. a static web server serving the fleet directory. Repeatable' -r
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand hook" -l cert-fingerprint -d 'SHA-256 fingerprint of the https server\'s certificate (`openssl x509 -noout -fingerprint -sha256 -in CERT.pem`); applies to every https --from-url' -r
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand hook" -l trusted-key -d 'A minisign public key (.pub): the bundle must be signed by one of these, and the hook installs them in /etc/vgpu-firstboot/trusted-keys/. Repeatable' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand hook" -l hook-template -d 'The vgpu-hook template [default: ../hook/vgpu-hook from this vgpu-bake, vgpu-hook next to it, or ../release/vgpu-hook from it]' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand hook" -l out -d 'The hook to write (mode 0755)' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand hook" -l json -d 'Print one JSON document (docs/JSON.md) instead of the text'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand hook" -s q -l quiet -d 'Print only errors and warnings (and the JSON document with --json)'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand hook" -s v -l verbose -d 'Print more on stderr: the bundle writer\'s phase timings, cache hits and misses, how each payload file was vouched for'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand hook" -s h -l help -d 'Print help'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand keygen" -l force -d 'Replace existing key files'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand keygen" -l json -d 'Print one JSON document (docs/JSON.md) instead of the text'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand keygen" -s q -l quiet -d 'Print only errors and warnings (and the JSON document with --json)'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand keygen" -s v -l verbose -d 'Print more on stderr: the bundle writer\'s phase timings, cache hits and misses, how each payload file was vouched for'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand keygen" -s h -l help -d 'Print help'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand fleet" -l out -d 'The fleet directory (made atomically; an earlier fleet directory there is replaced)' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand fleet" -l from-path -d 'A directory on the installed host holding the bundle (or the fleet directory\'s contents). Repeatable' -r
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand fleet" -l from-label -d 'A filesystem label (1-16 of [A-Za-z0-9._-]), e.g. the USB stick `vgpu-bake usb --label` made: found as /dev/disk/by-label/LABEL and mounted read-only. Repeatable' -r
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand fleet" -l from-url -d 'A base URL (http:// or https://) the bundle\'s file name is appended to, e.g. a static web server serving the fleet directory. Repeatable' -r
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand fleet" -l cert-fingerprint -d 'SHA-256 fingerprint of the https server\'s certificate (`openssl x509 -noout -fingerprint -sha256 -in CERT.pem`); applies to every https --from-url' -r
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand fleet" -l trusted-key -d 'A minisign public key (.pub): the bundle must be signed by one of these, and the hook installs them in /etc/vgpu-firstboot/trusted-keys/. Repeatable' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand fleet" -l hook-template -d 'The vgpu-hook template [default: ../hook/vgpu-hook from this vgpu-bake, vgpu-hook next to it, or ../release/vgpu-hook from it]' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand fleet" -l sign-key -d 'Sign every bundle\'s manifest with this minisign secret key' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand fleet" -l cache -d 'Driver cache directory [default: ~/.cache/vgpu-bake/drivers]' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand fleet" -l agent -d 'Agent binary to bake [default: the release vgpu-firstboot built next to this vgpu-bake]' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand fleet" -l gpu-db -d 'Use this gpu_info.db (upstream format) instead of the built-in one' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand fleet" -l json -d 'Print one JSON document (docs/JSON.md) instead of the text'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand fleet" -s q -l quiet -d 'Print only errors and warnings (and the JSON document with --json)'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand fleet" -s v -l verbose -d 'Print more on stderr: the bundle writer\'s phase timings, cache hits and misses, how each payload file was vouched for'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand fleet" -s h -l help -d 'Print help'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand answer" -l hook-url -d 'The hook is fetched from this URL (`source = "from-url"`) instead of being on the ISO (`prepare-iso --on-first-boot`)' -r
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand answer" -l cert-fingerprint -d 'SHA-256 fingerprint of the --hook-url server\'s certificate' -r
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand answer" -l gpu-db -d 'Use this gpu_info.db (upstream format) instead of the built-in one' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand answer" -l json -d 'Print JSON'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand answer" -s q -l quiet -d 'Print only errors and warnings (and the JSON document with --json)'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand answer" -s v -l verbose -d 'Print more on stderr: the bundle writer\'s phase timings, cache hits and misses, how each payload file was vouched for'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand answer" -s h -l help -d 'Print help'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand usb" -l out -d 'The image file' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand usb" -l label -d 'Filesystem label: 1-16 of [A-Za-z0-9._-]' -r
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand usb" -l force -d 'Replace an existing --out'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand usb" -l json -d 'Print one JSON document (docs/JSON.md) instead of the text'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand usb" -s q -l quiet -d 'Print only errors and warnings (and the JSON document with --json)'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand usb" -s v -l verbose -d 'Print more on stderr: the bundle writer\'s phase timings, cache hits and misses, how each payload file was vouched for'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand usb" -s h -l help -d 'Print help'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand guest-drivers" -l release -d 'Only this vGPU release, e.g. 18.4' -r
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand guest-drivers" -l os -d 'Only this guest OS: linux or windows' -r
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand guest-drivers" -l cache -d 'Driver cache directory [default: ~/.cache/vgpu-bake/drivers]' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand guest-drivers" -l sha256 -d 'Expected SHA-256 of the driver (printed by an earlier --fetch)' -r
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand guest-drivers" -l json -d 'Print JSON (with --fetch: the file fetched, docs/JSON.md)'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand guest-drivers" -l fetch -d 'Download the driver of --release for --os into the cache'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand guest-drivers" -s q -l quiet -d 'Print only errors and warnings (and the JSON document with --json)'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand guest-drivers" -s v -l verbose -d 'Print more on stderr: the bundle writer\'s phase timings, cache hits and misses, how each payload file was vouched for'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand guest-drivers" -s h -l help -d 'Print help'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand gpus" -l gpu-db -d 'Use this gpu_info.db (upstream format) instead of the built-in one' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand gpus" -l json -d 'Print JSON'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand gpus" -s q -l quiet -d 'Print only errors and warnings (and the JSON document with --json)'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand gpus" -s v -l verbose -d 'Print more on stderr: the bundle writer\'s phase timings, cache hits and misses, how each payload file was vouched for'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand gpus" -s h -l help -d 'Print help'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand doctor" -l cache -d 'Driver cache directory [default: ~/.cache/vgpu-bake/drivers]' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand doctor" -l out -d 'Where the bundles will be written (for the free space check)' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand doctor" -l gpu-db -d 'Use this gpu_info.db (upstream format) instead of the built-in one' -r -F
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand doctor" -l deep -d 'Hash every cached driver again and compare it with its sidecar, and check every frame cache entry\'s CRC (reads everything)'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand doctor" -l json -d 'Print one JSON document (`schema`, `failed`, `findings`)'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand doctor" -s q -l quiet -d 'Print only errors and warnings (and the JSON document with --json)'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand doctor" -s v -l verbose -d 'Print more on stderr: the bundle writer\'s phase timings, cache hits and misses, how each payload file was vouched for'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand help; and not __fish_seen_subcommand_from validate check plan fetch bake inspect install hook keygen fleet answer usb guest-drivers gpus doctor help" -f -a "validate" -d 'Check profiles: schema, releases, GPUs, licensing'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand help; and not __fish_seen_subcommand_from validate check plan fetch bake inspect install hook keygen fleet answer usb guest-drivers gpus doctor help" -f -a "check" -d 'Check profiles against facts captured on target hosts (`vgpu-firstboot facts --json > FILE` on each) with the agent\'s host gate: the Debian release of the Proxmox VE major, a Proxmox VE host, every `[[gpu]]` present (by id, and by address when given), each card\'s class against the mode, vGPU possible. Prints every reason per (profile, facts) pair; exit code 1 if any pair fails'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand help; and not __fish_seen_subcommand_from validate check plan fetch bake inspect install hook keygen fleet answer usb guest-drivers gpus doctor help" -f -a "plan" -d 'Print the resolved plan: every choice concrete, steps in order'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand help; and not __fish_seen_subcommand_from validate check plan fetch bake inspect install hook keygen fleet answer usb guest-drivers gpus doctor help" -f -a "fetch" -d 'Download (or import) the profile\'s driver into the cache and verify it'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand help; and not __fish_seen_subcommand_from validate check plan fetch bake inspect install hook keygen fleet answer usb guest-drivers gpus doctor help" -f -a "bake" -d 'Bake each profile into OUT/<name>.cpio.zst (+ .sha256)'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand help; and not __fish_seen_subcommand_from validate check plan fetch bake inspect install hook keygen fleet answer usb guest-drivers gpus doctor help" -f -a "inspect" -d 'List a bundle\'s entries and verify every file against its manifest, and report its signature'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand help; and not __fish_seen_subcommand_from validate check plan fetch bake inspect install hook keygen fleet answer usb guest-drivers gpus doctor help" -f -a "install" -d 'Lay a bundle onto a root directory (e.g. a mounted new host)'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand help; and not __fish_seen_subcommand_from validate check plan fetch bake inspect install hook keygen fleet answer usb guest-drivers gpus doctor help" -f -a "hook" -d 'Make the first-boot hook for the Proxmox automated installer (`proxmox-auto-install-assistant prepare-iso --on-first-boot HOOK`): one executable of at most 1 MiB that, at the installed host\'s first boot, finds its bundle (paths, then labels, then URLs), verifies its sha256 (and signature, with --trusted-key) before writing anything, lays it as `install` does, installs the trusted keys and starts vgpu-firstboot.service'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand help; and not __fish_seen_subcommand_from validate check plan fetch bake inspect install hook keygen fleet answer usb guest-drivers gpus doctor help" -f -a "keygen" -d 'Make an unencrypted minisign key pair for signing bundles: PREFIX.key (secret, mode 0600) and PREFIX.pub'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand help; and not __fish_seen_subcommand_from validate check plan fetch bake inspect install hook keygen fleet answer usb guest-drivers gpus doctor help" -f -a "fleet" -d 'Bake a fleet: each distinct profile of INVENTORY.toml once into DIR/bundles/<sha256>.cpio.zst (+ .sha256), DIR/index.toml (which host takes which bundle) and DIR/first-boot-hook (the installer\'s first-boot executable, carrying the index). Any static web server can serve DIR'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand help; and not __fish_seen_subcommand_from validate check plan fetch bake inspect install hook keygen fleet answer usb guest-drivers gpus doctor help" -f -a "answer" -d 'Print what the Proxmox automated installer\'s answer file needs for this profile: the [first-boot] section and the kernel arguments for the installer\'s boot line (which spare the agent its reboot)'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand help; and not __fish_seen_subcommand_from validate check plan fetch bake inspect install hook keygen fleet answer usb guest-drivers gpus doctor help" -f -a "usb" -d 'Write an ext4 filesystem image (no partition table; made with `mkfs.ext4 -d`, no loop device) holding a bundle (and its .sha256) or a fleet directory, labelled for `--from-label`. Write it to a stick with `dd`'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand help; and not __fish_seen_subcommand_from validate check plan fetch bake inspect install hook keygen fleet answer usb guest-drivers gpus doctor help" -f -a "guest-drivers" -d 'List the guest (VM) drivers of the bash installer\'s catalog: release, OS, version, file name, URL (or "no link published"), remarks. With --fetch, download one (--release and --os) into the driver cache as `fetch` does (cache, resume, retries); the catalog has no checksums, so it is recorded with the sha256 it had, printed'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand help; and not __fish_seen_subcommand_from validate check plan fetch bake inspect install hook keygen fleet answer usb guest-drivers gpus doctor help" -f -a "gpus" -d 'Query the GPU compatibility database (with NVIDIA-sourced corrections)'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand help; and not __fish_seen_subcommand_from validate check plan fetch bake inspect install hook keygen fleet answer usb guest-drivers gpus doctor help" -f -a "doctor" -d 'Check this build machine: the tools the commands run (GNU patch for unlock bakes, e2fsprogs for `usb`), the driver cache and its frame cache (sidecars, sizes, leftover partial and temporary files), and, for the profiles given, the free space their bakes need. One line per finding: ok, warn or fail, with what to do. Exit code 1 if any check fails (a warning does not)'
complete -c vgpu-bake -n "__fish_vgpu_bake_using_subcommand help; and not __fish_seen_subcommand_from validate check plan fetch bake inspect install hook keygen fleet answer usb guest-drivers gpus doctor help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
