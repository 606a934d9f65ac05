//! Chat templates. Instruct models expect their prompt inside the conversation format they were
//! tuned on. A model declares its template as Jinja (GGUF `tokenizer.chat_template`,
//! `tokenizer_config.json`'s `chat_template`, or `chat_template.jinja`); neko recognises the
//! format and renders the one-turn conversation it needs itself instead of running Jinja.
//! ChatML (SmolLM2, Qwen, ...) is recognised; other templates leave prompts unwrapped.

use std::path::Path;

/// A recognised chat format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatTemplate {
    /// ChatML: `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then
    /// `<|im_start|>assistant\n`. `system` is the system message the template inserts when a
    /// conversation brings none (SmolLM2: "You are a helpful AI assistant named SmolLM, ...");
    /// `bos` whether it writes `{{ bos_token }}` first: the one BOS a wrapped prompt gets, as
    /// `apply_chat_template` tokenises without the tokenizer's own special tokens.
    ChatMl { system: Option<String>, bos: bool },
}

const IM_START: &str = "<|im_start|>";
const IM_END: &str = "<|im_end|>";

impl ChatTemplate {
    /// Recognises a Jinja chat template.
    pub fn detect(template: &str) -> Option<Self> {
        if template.contains(IM_START) && template.contains(IM_END) {
            Some(ChatTemplate::ChatMl {
                system: default_system(template),
                bos: template.contains("bos_token"),
            })
        } else {
            None
        }
    }

    /// The conversation "user says `prompt`", ready for the assistant's answer: what the
    /// model's template renders for `[{"role": "user", "content": prompt}]` with
    /// `add_generation_prompt`.
    pub fn wrap(&self, prompt: &str) -> String {
        match self {
            ChatTemplate::ChatMl { system, .. } => {
                let mut s = String::new();
                if let Some(sys) = system {
                    s.push_str(&format!("{IM_START}system\n{sys}{IM_END}\n"));
                }
                s.push_str(&format!(
                    "{IM_START}user\n{prompt}{IM_END}\n{IM_START}assistant\n"
                ));
                s
            }
        }
    }

    /// Whether the template writes the BOS token before the conversation.
    pub fn bos(&self) -> bool {
        match self {
            ChatTemplate::ChatMl { bos, .. } => *bos,
        }
    }

    /// The token that ends the assistant's turn; generation stops on it.
    pub fn end_of_turn(&self) -> &'static str {
        match self {
            ChatTemplate::ChatMl { .. } => IM_END,
        }
    }

    /// A short name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            ChatTemplate::ChatMl { .. } => "chatml",
        }
    }
}

/// The literal system message a ChatML template inserts by default, if it has one:
/// `'<|im_start|>system\n...<|im_end|>` inside a string literal (newline written as a real
/// newline or as `\n`). A system block built from variables is not a default. Every system
/// block is looked at: Qwen2.5's first ones are its tools branch and the conversation's own
/// system message, its default comes third. A block right inside `{% if tools %}` is not
/// rendered for a conversation without tools, neko's.
fn default_system(template: &str) -> Option<String> {
    let head = format!("{IM_START}system");
    template
        .match_indices(&head)
        .filter(|&(at, _)| !in_tools_branch(&template[..at]))
        .find_map(|(at, _)| literal_system(&template[at + head.len()..]))
}

/// Whether the last tag before a block (`before` is the template up to it) opens a branch
/// taken only when there are tools (`{% if tools %}`, not `{% if not tools %}`).
fn in_tools_branch(before: &str) -> bool {
    let Some(open) = before.rfind("{%") else {
        return false;
    };
    let tag = before[open + 2..].trim_start_matches(['-', ' ']);
    let tag = tag
        .split("%}")
        .next()
        .unwrap_or("")
        .trim_end_matches(['-', ' ']);
    let words: Vec<&str> = tag.split_whitespace().collect();
    matches!(
        words.as_slice(),
        ["if", "tools"] | ["if", "tools", "is", "defined", ..]
    )
}

/// The system text of one block, from just after `<|im_start|>system`, when it is a literal.
fn literal_system(rest: &str) -> Option<String> {
    let rest = rest
        .strip_prefix('\n')
        .or_else(|| rest.strip_prefix("\\n"))?;
    let end = rest.find(IM_END)?;
    let text = &rest[..end];
    if text.is_empty() || text.contains("{{") || text.contains("{%") || text.contains("' +") {
        return None;
    }
    Some(unescape_jinja(text))
}

/// A Jinja string literal's text as rendered: `\n`, `\t`, `\'`, `\"` and `\\` unescaped.
fn unescape_jinja(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// The chat template declared in a model folder: `chat_template.jinja` (transformers v5) or
/// `tokenizer_config.json`'s `chat_template` (a string, or a list of named templates whose
/// `default` is taken).
pub fn template_in_dir(dir: &Path) -> Option<String> {
    if let Ok(t) = std::fs::read_to_string(dir.join("chat_template.jinja")) {
        return Some(t);
    }
    let text = std::fs::read_to_string(dir.join("tokenizer_config.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    match json.get("chat_template")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(named) => {
            default_of(named).and_then(|t| t.get("template")?.as_str().map(String::from))
        }
        _ => None,
    }
}

/// Whether `tokenizer_config.json` in `dir` names chat templates but none `default`, which
/// transformers refuses to choose from (and neko does not guess).
pub fn named_without_default(dir: &Path) -> bool {
    let text = std::fs::read_to_string(dir.join("tokenizer_config.json")).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    json.get("chat_template")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|named| default_of(named).is_none())
}

/// The entry named `default` of a list of named templates.
fn default_of(named: &[serde_json::Value]) -> Option<&serde_json::Value> {
    named
        .iter()
        .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M-Instruct's template, as its GGUF metadata carries it.
    const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn smollm2_template_renders_as_jinja_would() {
        let t = ChatTemplate::detect(SMOLLM2).unwrap();
        assert_eq!(
            t.wrap("Fix: helo"),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nFix: helo<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(t.end_of_turn(), "<|im_end|>");
    }

    /// Qwen2.5-Instruct's template: its default system message is in the third system block,
    /// after the tools branch's and the conversation's own (both built from variables).
    const QWEN25: &str = r#"{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"#;

    #[test]
    fn qwen25_default_system_is_found_past_the_variable_blocks() {
        assert_eq!(
            ChatTemplate::detect(QWEN25),
            Some(ChatTemplate::ChatMl {
                system: Some(
                    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.".into()
                ),
                bos: false,
            })
        );
    }

    #[test]
    fn escaped_newlines_and_variable_systems() {
        let qwen_like =
            r"{{- '<|im_start|>system\nYou are Qwen.<|im_end|>\n' }}{{'<|im_start|>' + m }}";
        assert_eq!(
            ChatTemplate::detect(qwen_like),
            Some(ChatTemplate::ChatMl {
                system: Some("You are Qwen.".into()),
                bos: false,
            })
        );
        let plain = "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n'}}{% endfor %}";
        assert_eq!(
            ChatTemplate::detect(plain),
            Some(ChatTemplate::ChatMl {
                system: None,
                bos: false
            })
        );
        assert_eq!(ChatTemplate::detect("{{ bos_token }}[INST] ..."), None);
    }

    /// What Jinja renders of a literal (`You\'re`), and a literal system block inside a
    /// tools branch, not rendered for a conversation without tools.
    #[test]
    fn system_literals_render_as_jinja_would() {
        let escaped = r#"{{ '<|im_start|>system\nYou\'re a \"careful\" reader.<|im_end|>\n' }}{{ '<|im_start|>' + m }}"#;
        let t = ChatTemplate::detect(escaped).unwrap();
        assert_eq!(
            t.wrap("x").lines().nth(1),
            Some("You're a \"careful\" reader.<|im_end|>")
        );
        let tools = "{%- if tools %}{{ '<|im_start|>system\nYou can call functions.<|im_end|>\n' }}{%- endif %}{{ '<|im_start|>' + m['role'] }}";
        assert_eq!(
            ChatTemplate::detect(tools),
            Some(ChatTemplate::ChatMl {
                system: None,
                bos: false
            })
        );
        // Rendered exactly when there are none: the default.
        let no_tools = tools.replace("if tools", "if not tools");
        let t = ChatTemplate::detect(&no_tools).unwrap();
        assert!(t
            .wrap("x")
            .starts_with("<|im_start|>system\nYou can call functions."));
        let bos = format!("{{{{ bos_token }}}}{tools}");
        assert!(ChatTemplate::detect(&bos).unwrap().bos());
    }
}
