//! How a job's prompt bytes are read (DESIGN.md §3).
//!
//! A prompt is either chat messages as JSON — `[{"role": "system"|"user"|"assistant", "content":
//! "…"}, …]` — or plain UTF-8 text, which means a single user message. Either way the model's pinned
//! chat template renders it, with the generation prompt appended, into the prompt token ids the
//! commitment binds; executors and validators read the same bytes the same way.

use serde::{Deserialize, Serialize};

/// Most bytes a prompt may have (the contracts bound it by calldata costs; this bounds memory).
pub const MAX_PROMPT_BYTES: usize = 1 << 20;

/// Who wrote a chat message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions for the model.
    System,
    /// The requester.
    User,
    /// The model (earlier turns).
    Assistant,
}

impl Role {
    /// The role's name in chat templates.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
        }
    }
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its text.
    pub content: String,
}

/// Why prompt bytes cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    /// Neither chat messages nor UTF-8 text.
    #[error("prompt is neither chat messages (JSON) nor UTF-8 text")]
    NotUtf8,
    /// JSON that looks like a message list but is not a valid one.
    #[error("prompt looks like chat messages but is not a valid list of them: {0}")]
    BadMessages(String),
    /// No messages at all.
    #[error("prompt has no messages")]
    Empty,
    /// Larger than [`MAX_PROMPT_BYTES`].
    #[error("prompt has {0} bytes, more than the {MAX_PROMPT_BYTES} allowed")]
    TooLarge(usize),
}

/// A prompt, read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Prompt {
    /// The messages, in order (plain text becomes one user message).
    pub messages: Vec<Message>,
}

impl Prompt {
    /// Reads prompt bytes: a JSON array (first non-space byte `[`) must be a valid message list;
    /// anything else is plain text.
    ///
    /// # Errors
    /// [`PromptError`] when the bytes are neither.
    pub fn parse(bytes: &[u8]) -> Result<Self, PromptError> {
        if bytes.len() > MAX_PROMPT_BYTES {
            return Err(PromptError::TooLarge(bytes.len()));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| PromptError::NotUtf8)?;
        let messages = if text.trim_start().starts_with('[') {
            serde_json::from_str::<Vec<Message>>(text)
                .map_err(|e| PromptError::BadMessages(e.to_string()))?
        } else {
            vec![Message {
                role: Role::User,
                content: text.to_owned(),
            }]
        };
        if messages.is_empty() {
            return Err(PromptError::Empty);
        }
        Ok(Self { messages })
    }

    /// A single user message.
    pub fn user(text: impl Into<String>) -> Self {
        Self {
            messages: vec![Message {
                role: Role::User,
                content: text.into(),
            }],
        }
    }

    /// The canonical JSON bytes of the messages (what a gateway signs for a chat request).
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising a Vec of plain structs cannot fail.
        serde_json::to_vec(&self.messages).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_one_user_message() {
        let prompt = Prompt::parse(b"Write a haiku about gas.").unwrap();
        assert_eq!(prompt, Prompt::user("Write a haiku about gas."));
    }

    #[test]
    fn chat_messages_are_read_in_order() {
        let json = br#" [{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}]"#;
        let prompt = Prompt::parse(json).unwrap();
        assert_eq!(prompt.messages.len(), 2);
        assert_eq!(prompt.messages[0].role, Role::System);
        assert_eq!(prompt.messages[1].content, "Hi");
        assert_eq!(Prompt::parse(&prompt.to_json()).unwrap(), prompt);
    }

    #[test]
    fn bad_prompts_are_refused_with_a_reason() {
        assert_eq!(Prompt::parse(&[0xff, 0xfe]), Err(PromptError::NotUtf8));
        assert_eq!(Prompt::parse(b"[]"), Err(PromptError::Empty));
        assert!(matches!(
            Prompt::parse(br#"[{"role":"robot","content":"x"}]"#),
            Err(PromptError::BadMessages(_))
        ));
        assert!(matches!(
            Prompt::parse(br#"[{"role":"user","content":"x","extra":1}]"#),
            Err(PromptError::BadMessages(_))
        ));
        let huge = vec![b'a'; MAX_PROMPT_BYTES + 1];
        assert_eq!(
            Prompt::parse(&huge),
            Err(PromptError::TooLarge(MAX_PROMPT_BYTES + 1))
        );
    }
}
