//! Which provider route a request came in on.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Chat,
    Completions,
    Embeddings,
    Responses,
    Messages,
}

impl Kind {
    pub fn from_path(path: &str) -> Option<Kind> {
        Some(match path.split('?').next().unwrap_or("") {
            "/v1/chat/completions" => Kind::Chat,
            "/v1/completions" => Kind::Completions,
            "/v1/embeddings" => Kind::Embeddings,
            "/v1/responses" => Kind::Responses,
            "/v1/messages" => Kind::Messages,
            _ => return None,
        })
    }
}
