//! Risk classification of tools (DESIGN.md §8).
//!
//! [`classify`] reads a tool's name, description, input schema and annotations and returns a
//! [`Risk`]: a class, its level, and every [`Signal`] that led there, so that the admin UI can show
//! the user *why* a tool is, say, `execute`. The same definition always gives the same answer.
//!
//! # How the class is decided
//!
//! Signals come in three kinds, and the class is the most severe class any applicable signal
//! suggests (ties between the two critical classes go to `financial`, the more specific one):
//!
//! 1. **Actions** say what the tool does.
//!    - The *first verb of the name* (`delete_task` → `delete`; names are split on `_`, `-`, `.`,
//!      `/`, spaces and camelCase). Later verbs of the name raise the class too (`get_or_create`),
//!      unless they are as often nouns (`get_thread_reply`, `list_posts`: `reply`, `post`).
//!      Auxiliary words (`start`, `trigger`, `do`, …) are skipped: `start_search` is a search.
//!    - Only when the name has no verb: the *leading verbs of the description* ("Lists, shows or
//!      switches …" gives list, show and switch; "This tool will create …" gives create).
//!    - Phrases of the description that name code execution or irreversible loss, wherever they
//!      are ("runs any kubectl command", "permanently deletes", "cannot be undone").
//!    - Arguments that carry code: a `script`, `command`, `cmd`, `shell`, `sql`, `javascript`, …
//!      property means the tool runs what it is given, whatever its verb (`query(sql)` executes).
//!      Only top-level argument names are read.
//! 2. **Objects** say what the action touches: money (`invoice`, `refund`, `price`, `amount`,
//!    `currency`, …) or code (`script`, `firmware`, `provision`, `manifest`, a TR-069 `connection
//!    request`, …), in the name, the description or an argument name. They apply only to a tool
//!    that is not read-only by everything else we know: `list_invoices` is `read`,
//!    `create_invoice` is `financial`, `get_firmware` is `read`, `download_firmware` is `execute`.
//! 3. **Annotations** are the upstream's untrusted hints and only ever raise the class.
//!    `readOnlyHint: true` is recorded but never lowers anything. `readOnlyHint: false` and
//!    `destructiveHint: true` make the tool at least `write`. In the MCP spec "destructive" means any
//!    non-additive update (an overwrite, a patch), which is our `write`; so `destructiveHint: true`
//!    means `destructive` only for a tool about which nothing else is known. Absent hints are not
//!    read as the spec's defaults (`destructiveHint` defaults to true, which would make every
//!    unannotated tool destructive).
//!
//! **Default.** A tool whose name and description name no action at all is `write`: it may change
//! state, so it is not trusted as `read`, and there is no evidence for anything worse. The
//! [`SignalSource::Default`] signal says so.
//!
//! The class is always the maximum of `signals[..].suggests`, and the signals are sorted most
//! severe first, so the first signal explains the class.

use std::fmt;
use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::tools::ToolDef;

/// What a tool can do, ordered by severity. `Destructive` and `Financial` are both critical;
/// when both apply, `Financial` wins as the more specific one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RiskClass {
    Read,
    Write,
    Execute,
    Destructive,
    Financial,
}

impl RiskClass {
    pub const ALL: [RiskClass; 5] = [
        RiskClass::Read,
        RiskClass::Write,
        RiskClass::Execute,
        RiskClass::Destructive,
        RiskClass::Financial,
    ];

    pub fn level(self) -> RiskLevel {
        match self {
            RiskClass::Read => RiskLevel::Low,
            RiskClass::Write => RiskLevel::Medium,
            RiskClass::Execute => RiskLevel::High,
            RiskClass::Destructive | RiskClass::Financial => RiskLevel::Critical,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RiskClass::Read => "read",
            RiskClass::Write => "write",
            RiskClass::Execute => "execute",
            RiskClass::Destructive => "destructive",
            RiskClass::Financial => "financial",
        }
    }
}

impl fmt::Display for RiskClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much harm a class can do, as shown to users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RiskLevel {
    Low,
    Medium,
    High,
    Critical,
}

impl RiskLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Low => "low",
            RiskLevel::Medium => "medium",
            RiskLevel::High => "high",
            RiskLevel::Critical => "critical",
        }
    }
}

impl fmt::Display for RiskLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which part of the tool definition a signal was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignalSource {
    Annotation,
    Name,
    Description,
    Schema,
    /// Nothing in the name or description named an action; the conservative default applied.
    Default,
}

/// One piece of evidence: where it was found, what matched, which class it suggests and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    pub source: SignalSource,
    pub matched: String,
    pub suggests: RiskClass,
    pub detail: String,
}

/// The classification of one tool. `class` is the most severe class among `signals`, which are
/// sorted most severe first and are never empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Risk {
    pub class: RiskClass,
    pub level: RiskLevel,
    pub signals: Vec<Signal>,
}

/// Classifies a tool by what its definition says it does. See the module documentation for the
/// rules. Pure and deterministic: the order of schema properties does not matter either.
pub fn classify(tool: &ToolDef) -> Risk {
    let description = tool.description.as_deref().unwrap_or("").to_lowercase();
    let name_tokens = tokenize(&tool.name);
    let property_names: Vec<&str> = tool.argument_names().collect();

    // 1. Actions.
    let mut actions = name_verbs(&name_tokens);
    let name_has_verb = !actions.is_empty();
    if !name_has_verb {
        actions.extend(leading_description_verbs(&description));
    }
    actions.extend(description_phrases(&description));
    actions.extend(code_arguments(&property_names));

    // 2. Objects, applied below once we know whether the tool acts at all.
    let mut objects = name_objects(&name_tokens);
    objects.extend(description_objects(&description));
    objects.extend(argument_objects(&property_names));

    let evidence = !actions.is_empty() || !objects.is_empty();
    let mut signals = actions;
    if signals.is_empty() {
        signals.push(signal(
            SignalSource::Default,
            "",
            RiskClass::Write,
            "neither the name nor the description names an action; an unknown tool may change state",
        ));
    }

    // 3. Annotations: they may raise the class, never lower it.
    if let Some(hints) = &tool.annotations {
        if hints.read_only_hint == Some(true) {
            signals.push(signal(
                SignalSource::Annotation,
                "readOnlyHint: true",
                RiskClass::Read,
                "the upstream says the tool only reads; an untrusted hint, it never lowers the class",
            ));
        }
        if hints.read_only_hint == Some(false) {
            signals.push(signal(
                SignalSource::Annotation,
                "readOnlyHint: false",
                RiskClass::Write,
                "the upstream says the tool changes state",
            ));
        }
        if hints.destructive_hint == Some(true) {
            if evidence {
                signals.push(signal(
                    SignalSource::Annotation,
                    "destructiveHint: true",
                    RiskClass::Write,
                    "the upstream says the tool may overwrite or change existing data (the name, description and schema say what it does)",
                ));
            } else {
                signals.push(signal(
                    SignalSource::Annotation,
                    "destructiveHint: true",
                    RiskClass::Destructive,
                    "the upstream says the tool may destroy data, and nothing else says what it does",
                ));
            }
        }
    }

    if max_class(&signals) > RiskClass::Read {
        // A word already counted as an action (`provision`, a `script` argument) is not counted
        // again as an object.
        for object in objects {
            let known = signals.iter().any(|s| {
                s.source == object.source
                    && s.matched == object.matched
                    && s.suggests >= object.suggests
            });
            if !known {
                signals.push(object);
            }
        }
    }

    signals.sort_by(|a, b| {
        b.suggests
            .cmp(&a.suggests)
            .then(a.source.cmp(&b.source))
            .then_with(|| a.matched.cmp(&b.matched))
            .then_with(|| a.detail.cmp(&b.detail))
    });
    signals.dedup();
    let class = max_class(&signals);
    Risk {
        class,
        level: class.level(),
        signals,
    }
}

fn max_class(signals: &[Signal]) -> RiskClass {
    signals
        .iter()
        .map(|s| s.suggests)
        .max()
        .unwrap_or(RiskClass::Write)
}

fn signal(source: SignalSource, matched: &str, suggests: RiskClass, detail: &str) -> Signal {
    Signal {
        source,
        matched: matched.to_owned(),
        suggests,
        detail: detail.to_owned(),
    }
}

/// Splits an identifier into lowercase words: `snake_case`, `kebab-case`, `dotted.names`,
/// `camelCase`, `HTTPServer` (→ http, server) and digits (`v2Api` → v, 2, api).
pub(crate) fn tokenize(name: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    for part in name.split(|c: char| !c.is_alphanumeric()) {
        let chars: Vec<char> = part.chars().collect();
        let mut current = String::new();
        for (i, &c) in chars.iter().enumerate() {
            if i > 0 && !current.is_empty() {
                let prev = chars[i - 1];
                let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
                let boundary = (c.is_uppercase() && (prev.is_lowercase() || prev.is_ascii_digit()))
                    || (c.is_uppercase() && prev.is_uppercase() && next_is_lower)
                    || (c.is_ascii_digit() != prev.is_ascii_digit());
                if boundary {
                    tokens.push(std::mem::take(&mut current));
                }
            }
            current.extend(c.to_lowercase());
        }
        if !current.is_empty() {
            tokens.push(current);
        }
    }
    tokens
}

/// A verb of the lexicon: the class it suggests, and whether it is as often a noun (`post`,
/// `reply`, `refund`), in which case it counts in a name only as the name's first verb.
#[derive(Debug, Clone, Copy)]
struct Verb {
    class: RiskClass,
    noun_like: bool,
}

fn verb(word: &str) -> Option<Verb> {
    use RiskClass::*;
    let (class, noun_like) = match word {
        // Reading.
        "get" | "list" | "search" | "read" | "fetch" | "describe" | "find" | "query" | "show"
        | "view" | "lookup" | "retrieve" | "count" | "inspect" | "browse" | "explain" | "echo"
        | "ping" | "peek" | "refresh" | "screenshot" | "capture" | "preview" | "summarize"
        | "summarise" | "analyze" | "analyse" | "validate" | "verify" | "calculate" | "compute"
        | "diff" | "compare" | "return" | "tail" | "poll" | "whoami" | "explore" => (Read, false),
        "check" => (Read, true),
        // Changing state.
        "create" | "update" | "put" | "add" | "untag" | "write" | "edit" | "modify" | "send"
        | "publish" | "retry" | "reboot" | "restart" | "rename" | "move" | "copy" | "upload"
        | "download" | "push" | "merge" | "fork" | "append" | "insert" | "save" | "store"
        | "assign" | "unassign" | "mark" | "toggle" | "enable" | "disable" | "stop" | "pause"
        | "resume" | "submit" | "approve" | "reject" | "manage" | "configure" | "apply"
        | "scale" | "navigate" | "click" | "fill" | "press" | "hover" | "drag" | "invite"
        | "share" | "archive" | "unarchive" | "restore" | "import" | "sync" | "upsert"
        | "register" | "connect" | "reconnect" | "disconnect" | "attach" | "detach" | "notify"
        | "finalize" | "finalise" | "close" | "reopen" | "lock" | "unlock" | "switch"
        | "replace" | "react" | "star" | "unstar" | "follow" | "unfollow" | "login" | "logout"
        | "increment" | "decrement" | "reserve" | "forward" => (Write, false),
        "set" | "tag" | "change" | "patch" | "post" | "reply" | "comment" | "commit" | "label"
        | "schedule" | "link" | "type" | "message" => (Write, true),
        // Running code or installing software.
        "exec" | "execute" | "eval" | "evaluate" | "invoke" | "spawn" | "deploy" | "install"
        | "provision" | "flash" | "upgrade" | "launch" | "compile" => (Execute, false),
        "run" | "script" | "shell" | "command" => (Execute, true),
        // Destroying.
        "delete" | "del" | "remove" | "rm" | "rmdir" | "drop" | "destroy" | "purge" | "wipe"
        | "truncate" | "erase" | "uninstall" | "kill" | "terminate" | "cancel" | "unlink"
        | "clear" | "factory" => (Destructive, false),
        "reset" => (Destructive, true),
        // Moving money.
        "pay" | "purchase" | "buy" | "withdraw" | "deposit" => (Financial, false),
        "charge" | "refund" | "transfer" | "invoice" | "bill" | "payout" | "checkout" => {
            (Financial, true)
        }
        _ => return None,
    };
    Some(Verb { class, noun_like })
}

/// Words that lend a name their next word's meaning: `start_search` searches,
/// `trigger_deploy` deploys.
fn is_auxiliary(word: &str) -> bool {
    matches!(
        word,
        "start" | "begin" | "trigger" | "do" | "perform" | "try" | "attempt" | "batch" | "bulk"
    )
}

/// What an action touches, when that raises the stakes. Singular forms.
fn object(word: &str) -> Option<RiskClass> {
    match word {
        "payment" | "invoice" | "refund" | "charge" | "price" | "pricing" | "coupon"
        | "discount" | "subscription" | "dispute" | "payout" | "transfer" | "fund" | "money"
        | "billing" | "checkout" | "wallet" | "amount" | "currency" | "iban" => {
            Some(RiskClass::Financial)
        }
        "script" | "command" | "shell" | "firmware" | "provision" | "manifest" | "repl"
        | "interpreter" => Some(RiskClass::Execute),
        _ => None,
    }
}

/// The singular of a plural word, if it has an obvious one.
fn singular(word: &str) -> Option<&str> {
    word.strip_suffix("es")
        .filter(|stem| stem.ends_with("sh") || stem.ends_with("ch") || stem.ends_with('x'))
        .or_else(|| word.strip_suffix('s').filter(|stem| !stem.ends_with('s')))
}

fn object_of(word: &str) -> Option<RiskClass> {
    object(word).or_else(|| singular(word).and_then(object))
}

fn name_verbs(tokens: &[String]) -> Vec<Signal> {
    let mut signals = Vec::new();
    let mut first = true;
    for token in tokens {
        if first && is_auxiliary(token) {
            continue;
        }
        let Some(v) = verb(token) else { continue };
        if first {
            first = false;
            signals.push(Signal {
                source: SignalSource::Name,
                matched: token.clone(),
                suggests: v.class,
                detail: format!("`{token}` is the first verb of the name"),
            });
        } else if !v.noun_like && v.class > RiskClass::Read {
            signals.push(Signal {
                source: SignalSource::Name,
                matched: token.clone(),
                suggests: v.class,
                detail: format!("the name also says `{token}`"),
            });
        }
    }
    signals
}

fn name_objects(tokens: &[String]) -> Vec<Signal> {
    let mut signals = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        if let Some(class) = object_of(token) {
            signals.push(Signal {
                source: SignalSource::Name,
                matched: token.clone(),
                suggests: class,
                detail: format!("the tool acts on {}", object_description(class)),
            });
        }
        // TR-069: a connection request makes a device open a session and run its queued tasks.
        if token == "connection" && tokens.get(i + 1).is_some_and(|t| t == "request") {
            signals.push(signal(
                SignalSource::Name,
                "connection request",
                RiskClass::Execute,
                "a TR-069 connection request makes the device run its queued tasks now",
            ));
        }
    }
    signals
}

fn object_description(class: RiskClass) -> &'static str {
    match class {
        RiskClass::Financial => "money",
        RiskClass::Execute => "code that gets run",
        _ => "this",
    }
}

/// "This tool will …", "Use this tool to …" and the like, before the leading verb.
static PREAMBLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^\s*(?:this tool (?:will|can|lets you|allows you to|is used to)|use this tool to|tool (?:to|that)|(?:allows|lets) (?:you|the user|the agent|the model) to|used to|helps? (?:you )?(?:to )?)\s+",
    )
    .expect("a valid regex")
});

static WORD: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[a-z]+|,").expect("a valid regex"));

/// The verbs a description opens with: "Lists, shows or switches the context" → list, show,
/// switch. Third-person forms are reduced to the base form.
fn leading_description_verbs(description: &str) -> Vec<Signal> {
    let rest = PREAMBLE.replace(description, "");
    let mut signals = Vec::new();
    let mut words = WORD.find_iter(&rest).map(|m| m.as_str()).peekable();
    while words
        .peek()
        .is_some_and(|w| base_verb(w).is_some_and(|b| is_auxiliary(&b)))
    {
        words.next();
    }
    while let Some(word) = words.next() {
        let Some((base, v)) = base_verb(word).and_then(|b| verb(&b).map(|v| (b, v))) else {
            break;
        };
        signals.push(Signal {
            source: SignalSource::Description,
            matched: word.to_owned(),
            suggests: v.class,
            detail: format!("the description opens with `{base}`"),
        });
        while words
            .peek()
            .is_some_and(|w| matches!(*w, "," | "or" | "and"))
        {
            words.next();
        }
    }
    signals
}

/// The base form of a (possibly third-person) verb, if the lexicon or the auxiliaries know it.
fn base_verb(word: &str) -> Option<String> {
    let known = |w: &String| verb(w).is_some() || is_auxiliary(w);
    [
        Some(word.to_owned()),
        word.strip_suffix("ies").map(|s| format!("{s}y")),
        word.strip_suffix("es").map(str::to_owned),
        word.strip_suffix('s').map(str::to_owned),
    ]
    .into_iter()
    .flatten()
    .find(known)
}

/// Description phrases that mean running code, destroying data or moving money, whatever the
/// tool's verb.
static PHRASES: LazyLock<Vec<(Regex, RiskClass, &'static str)>> = LazyLock::new(|| {
    let phrase = |re: &str, class, detail| (Regex::new(re).expect("a valid regex"), class, detail);
    vec![
        phrase(
            r"\b(?:run|runs|running|execute|executes|executing|exec|evaluate|evaluates|eval|invoke|invokes)\b(?:\s+[\w'-]+){0,4}?\s+(?:commands?|code|scripts?|javascript|js|python|sql|shell|statements?|programs?|binar(?:y|ies))\b",
            RiskClass::Execute,
            "the description says the tool runs code or commands",
        ),
        phrase(
            r"\b(?:shell|terminal|bash|powershell|kubectl|cli|system) commands?\b",
            RiskClass::Execute,
            "the description mentions commands for a shell or CLI",
        ),
        phrase(
            r"\barbitrary (?:code|commands?|scripts?|sql)\b",
            RiskClass::Execute,
            "the description mentions arbitrary code",
        ),
        phrase(
            r"\b(?:permanently|irreversibly|irrevocably)\s+(?:delete|deletes|deleted|remove|removes|removed|destroy|destroys|erase|erases|wipe|wipes)\b",
            RiskClass::Destructive,
            "the description says data is lost for good",
        ),
        phrase(
            r"\b(?:cannot|can't|can not) be (?:undone|reversed|recovered)\b",
            RiskClass::Destructive,
            "the description says the effect cannot be undone",
        ),
        phrase(
            r"\bfactory[- ]reset",
            RiskClass::Destructive,
            "the description mentions a factory reset",
        ),
        phrase(
            r"\b(?:transfers?|sends?|moves?) (?:the )?(?:funds|money|payments?)\b",
            RiskClass::Financial,
            "the description says the tool moves money",
        ),
        phrase(
            r"\b(?:charges?|bills?) (?:the |a )?(?:customer|card|account|user)s?\b",
            RiskClass::Financial,
            "the description says the tool charges someone",
        ),
    ]
});

fn description_phrases(description: &str) -> Vec<Signal> {
    PHRASES
        .iter()
        .filter_map(|(re, class, detail)| {
            re.find(description)
                .map(|m| signal(SignalSource::Description, m.as_str(), *class, detail))
        })
        .collect()
}

static DESCRIPTION_WORDS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[a-z]+").expect("a valid regex"));

fn description_objects(description: &str) -> Vec<Signal> {
    let mut signals = Vec::new();
    let words: Vec<&str> = DESCRIPTION_WORDS
        .find_iter(description)
        .map(|m| m.as_str())
        .collect();
    for (i, word) in words.iter().enumerate() {
        // Prose mentions commands, scripts, amounts and charges of harmless tools all the time
        // ("blocked commands", "the charge it belongs to"); only these nouns count there.
        let singular_word = singular(word).unwrap_or(word);
        let class = object_of(word).filter(|_| {
            !matches!(
                singular_word,
                "command" | "script" | "manifest" | "amount" | "currency" | "transfer" | "charge"
            )
        });
        if let Some(class) = class {
            signals.push(Signal {
                source: SignalSource::Description,
                matched: (*word).to_owned(),
                suggests: class,
                detail: format!(
                    "the description says the tool acts on {}",
                    object_description(class)
                ),
            });
        }
        if *word == "connection"
            && words
                .get(i + 1)
                .is_some_and(|w| *w == "request" || *w == "requests")
        {
            signals.push(signal(
                SignalSource::Description,
                "connection request",
                RiskClass::Execute,
                "a TR-069 connection request makes the device run its queued tasks now",
            ));
        }
    }
    signals
}

/// Argument names that carry code to be run, whatever the tool's verb.
fn code_arguments(properties: &[&str]) -> Vec<Signal> {
    properties
        .iter()
        .filter(|p| {
            let tokens = tokenize(p);
            matches!(
                tokens
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .as_slice(),
                ["script"
                    | "scripts"
                    | "command"
                    | "commands"
                    | "cmd"
                    | "shell"
                    | "sql"
                    | "javascript"
                    | "js"
                    | "python"
                    | "bash"
                    | "powershell"]
                    | ["source" | "shell" | "js" | "python", "code"]
                    | ["command", "line"]
            )
        })
        .map(|p| Signal {
            source: SignalSource::Schema,
            matched: (*p).to_owned(),
            suggests: RiskClass::Execute,
            detail: format!("the `{p}` argument carries code or a command to run"),
        })
        .collect()
}

/// Argument names that speak of money or of code, as objects of the tool's action.
fn argument_objects(properties: &[&str]) -> Vec<Signal> {
    let mut signals = Vec::new();
    for p in properties {
        let tokens = tokenize(p);
        let class = tokens
            .iter()
            .filter_map(|t| object_of(t))
            .chain((tokens == ["code"]).then_some(RiskClass::Execute))
            .max();
        if let Some(class) = class {
            signals.push(Signal {
                source: SignalSource::Schema,
                matched: (*p).to_owned(),
                suggests: class,
                detail: format!("the `{p}` argument is about {}", object_description(class)),
            });
        }
    }
    signals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_words_in_every_style() {
        let cases: &[(&str, &[&str])] = &[
            ("delete_task", &["delete", "task"]),
            ("get-env", &["get", "env"]),
            ("users.list", &["users", "list"]),
            ("createPaymentLink", &["create", "payment", "link"]),
            ("HTTPGetStatus", &["http", "get", "status"]),
            ("listV2Items", &["list", "v", "2", "items"]),
            ("puppeteer_navigate", &["puppeteer", "navigate"]),
            ("files/read all", &["files", "read", "all"]),
            ("", &[]),
        ];
        for (name, words) in cases {
            assert_eq!(tokenize(name), *words, "{name}");
        }
    }

    #[test]
    fn third_person_verbs_reduce_to_their_base() {
        for (word, base) in [
            ("lists", "list"),
            ("switches", "switch"),
            ("applies", "apply"),
            ("creates", "create"),
            ("echoes", "echo"),
            ("deletes", "delete"),
            ("starts", "start"),
        ] {
            assert_eq!(base_verb(word).as_deref(), Some(base), "{word}");
        }
        assert_eq!(base_verb("devices"), None);
    }

    #[test]
    fn plurals_of_objects_are_recognised() {
        assert_eq!(object_of("invoices"), Some(RiskClass::Financial));
        assert_eq!(object_of("scripts"), Some(RiskClass::Execute));
        assert_eq!(object_of("prices"), Some(RiskClass::Financial));
        assert_eq!(object_of("addresses"), None);
    }
}
