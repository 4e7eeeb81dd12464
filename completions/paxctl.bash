_paxctl_completion() {
    local line=${COMP_LINE-} word response completion type value i cword=0
    local -a words=() lines=()
    [[ -n $line ]] || printf -v line '%s ' "${COMP_WORDS[@]}"
    for ((i = 0; i < ${#COMP_WORDS[@]}; i++)); do
        word=${COMP_WORDS[i]}
        if ((i > 0)) && [[ $line != [[:blank:]]* ]]; then
            words[${#words[@]} - 1]+=$word
        else
            words+=("$word")
        fi
        line=${line#"${line%%[![:blank:]]*}"}
        line=${line#"$word"}
        ((i == COMP_CWORD)) && cword=$((${#words[@]} - 1))
    done
    local cur=${words[cword]-}
    local kept=${cur%"${COMP_WORDS[COMP_CWORD]-}"}
    response=$(IFS=$'\n'; env COMP_WORDS="${words[*]}" COMP_CWORD=$cword \
_PAXCTL_COMPLETE=bash_complete "$1" 2>/dev/null)
    [[ -n $response ]] && mapfile -t lines <<< "$response"
    for completion in "${lines[@]}"; do
        IFS=',' read -r type value <<< "$completion"
        if [[ $type == 'dir' ]]; then
            COMPREPLY=()
            compopt -o dirnames
        elif [[ $type == 'file' ]]; then
            COMPREPLY=()
            compopt -o default
        elif [[ $type == 'plain' ]]; then
            [[ $value == */ ]] && compopt -o nospace
            [[ -n $kept && $value == "$kept"* ]] && value=${value#"$kept"}
            COMPREPLY+=("$value")
        fi
    done
    return 0
}

_paxctl_completion_setup() {
    complete -o nosort -F _paxctl_completion paxctl
}

_paxctl_completion_setup;
