# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_vgpu_firstboot_global_optspecs
    string join \n root= q/quiet v/verbose h/help V/version
end

function __fish_vgpu_firstboot_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_vgpu_firstboot_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_vgpu_firstboot_using_subcommand
    set -l cmd (__fish_vgpu_firstboot_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_needs_command" -l root -d 'the host\'s root; reads and writes stay under it' -r -f -a "(__fish_complete_directories)"
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_needs_command" -s q -l quiet -d 'only warnings and errors'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_needs_command" -s v -l verbose -d 'more detail (repeatable)'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_needs_command" -s h -l help -d 'this text'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_needs_command" -s V -l version -d 'the version'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_needs_command" -f -a "run" -d 'run the plan\'s next phase'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_needs_command" -f -a "status" -d 'progress (exit codes below)'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_needs_command" -f -a "plan" -d 'dry run: what `run` would check and change'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_needs_command" -f -a "facts" -d 'what the agent sees on this host'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_needs_command" -f -a "retry" -d 'a failed step runs again at `run`'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_needs_command" -f -a "undo" -d 'revert the agent\'s changes from its journal, newest first'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_needs_command" -f -a "licensing" -d 'the licensing step\'s client token, guest scripts and DLS URL, and their use'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_needs_command" -f -a "upgrade" -d 'apply a newer installed bundle over a finished plan (done or failed)'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand run" -l root -d 'the host\'s root; reads and writes stay under it' -r -f -a "(__fish_complete_directories)"
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand run" -s q -l quiet -d 'only warnings and errors'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand run" -s v -l verbose -d 'more detail (repeatable)'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand run" -s h -l help -d 'this text'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand run" -s V -l version -d 'the version'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand status" -l timeout -d 'wait at most SECS seconds' -r
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand status" -l root -d 'the host\'s root; reads and writes stay under it' -r -f -a "(__fish_complete_directories)"
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand status" -l json -d 'print JSON'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand status" -l wait -d 'poll until done, failed or needs an operator'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand status" -s q -l quiet -d 'only warnings and errors'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand status" -s v -l verbose -d 'more detail (repeatable)'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand status" -s h -l help -d 'this text'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand status" -s V -l version -d 'the version'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand plan" -l root -d 'the host\'s root; reads and writes stay under it' -r -f -a "(__fish_complete_directories)"
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand plan" -l json -d 'print JSON'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand plan" -s q -l quiet -d 'only warnings and errors'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand plan" -s v -l verbose -d 'more detail (repeatable)'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand plan" -s h -l help -d 'this text'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand plan" -s V -l version -d 'the version'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand facts" -l root -d 'the host\'s root; reads and writes stay under it' -r -f -a "(__fish_complete_directories)"
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand facts" -l json -d 'print JSON'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand facts" -s q -l quiet -d 'only warnings and errors'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand facts" -s v -l verbose -d 'more detail (repeatable)'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand facts" -s h -l help -d 'this text'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand facts" -s V -l version -d 'the version'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand retry" -l root -d 'the host\'s root; reads and writes stay under it' -r -f -a "(__fish_complete_directories)"
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand retry" -s q -l quiet -d 'only warnings and errors'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand retry" -s v -l verbose -d 'more detail (repeatable)'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand retry" -s h -l help -d 'this text'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand retry" -s V -l version -d 'the version'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand undo" -l root -d 'the host\'s root; reads and writes stay under it' -r -f -a "(__fish_complete_directories)"
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand undo" -l dry-run -d 'print the actions, change nothing'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand undo" -l json -d 'print JSON'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand undo" -s q -l quiet -d 'only warnings and errors'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand undo" -s v -l verbose -d 'more detail (repeatable)'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand undo" -s h -l help -d 'this text'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand undo" -s V -l version -d 'the version'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand licensing" -l root -d 'the host\'s root; reads and writes stay under it' -r -f -a "(__fish_complete_directories)"
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand licensing" -l json -d 'print JSON'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand licensing" -s q -l quiet -d 'only warnings and errors'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand licensing" -s v -l verbose -d 'more detail (repeatable)'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand licensing" -s h -l help -d 'this text'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand licensing" -s V -l version -d 'the version'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand upgrade" -l root -d 'the host\'s root; reads and writes stay under it' -r -f -a "(__fish_complete_directories)"
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand upgrade" -s q -l quiet -d 'only warnings and errors'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand upgrade" -s v -l verbose -d 'more detail (repeatable)'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand upgrade" -s h -l help -d 'this text'
complete -c vgpu-firstboot -n "__fish_vgpu_firstboot_using_subcommand upgrade" -s V -l version -d 'the version'
