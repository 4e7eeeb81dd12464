#compdef paxctl

_paxctl_completion() {
    local -a completions
    local -a completions_with_descriptions
    local -a directories
    local -a response
    (( ! $+commands[paxctl] )) && return 1

    response=("${(@f)$(env COMP_WORDS="${words[*]}" COMP_CWORD=$((CURRENT-1)) \
_PAXCTL_COMPLETE=zsh_complete paxctl 2>/dev/null)}")

    for type key descr in ${response}; do
        if [[ "$type" == "plain" ]]; then
            if [[ "$descr" == "_" && "$key" == */ ]]; then
                directories+=("$key")
            elif [[ "$descr" == "_" ]]; then
                completions+=("$key")
            else
                completions_with_descriptions+=("$key":"$descr")
            fi
        elif [[ "$type" == "dir" ]]; then
            _path_files -/
        elif [[ "$type" == "file" ]]; then
            _path_files -f
        fi
    done

    if [ -n "$completions_with_descriptions" ]; then
        _describe -V unsorted completions_with_descriptions -U
    fi

    if [ -n "$completions" ]; then
        compadd -U -V unsorted -a completions
    fi

    if [ -n "$directories" ]; then
        compadd -U -V unsorted -S '' -a directories
    fi
}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    # autoload from fpath, call function directly
    _paxctl_completion "$@"
else
    # eval/source/. command, register function for later
    compdef _paxctl_completion paxctl
fi
