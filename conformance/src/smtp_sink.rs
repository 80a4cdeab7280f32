//! A loopback SMTP receiver for e-mail cases: speaks just enough SMTP
//! (no TLS, no AUTH) to accept messages, and keeps each one's recipients
//! and decoded text.

use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Debug, Clone, Default)]
pub struct Mail {
    pub to: Vec<String>,
    /// Headers and body, quoted-printable soft breaks and escapes undone.
    pub text: String,
}

pub struct SmtpSink {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SmtpSink {
    pub async fn start() -> Result<SmtpSink, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("SMTP sink: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let store = mails.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let _ = session(sock, store).await;
                });
            }
        });
        Ok(SmtpSink { port, mails, task })
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Waits up to `wait` for the `n`-th message (1-based).
    pub async fn wait_for(&self, n: usize, wait: std::time::Duration) -> Option<Mail> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(m) = self.mails().get(n - 1) {
                return Some(m.clone());
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

async fn session(sock: tokio::net::TcpStream, store: Arc<Mutex<Vec<Mail>>>) -> std::io::Result<()> {
    let (r, mut w) = sock.into_split();
    let mut lines = BufReader::new(r).lines();
    w.write_all(b"220 sink.local ESMTP\r\n").await?;
    let mut mail = Mail::default();
    while let Some(line) = lines.next_line().await? {
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            b"250-sink.local\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("RCPT TO:") {
            mail.to.push(
                line[8..]
                    .trim()
                    .trim_matches(|c| c == '<' || c == '>')
                    .to_owned(),
            );
            b"250 OK\r\n"
        } else if upper.starts_with("DATA") {
            w.write_all(b"354 go ahead\r\n").await?;
            let mut raw = String::new();
            while let Some(l) = lines.next_line().await? {
                if l == "." {
                    break;
                }
                raw.push_str(l.strip_prefix('.').unwrap_or(&l));
                raw.push('\n');
            }
            mail.text = unquote(&raw);
            if let Ok(mut m) = store.lock() {
                m.push(std::mem::take(&mut mail));
            }
            b"250 queued\r\n"
        } else if upper.starts_with("QUIT") {
            w.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            b"250 OK\r\n"
        };
        w.write_all(reply).await?;
    }
    Ok(())
}

/// Undoes quoted-printable soft line breaks and `=XX` escapes (harmless on
/// 7-bit text, which has no `=` followed by two hex digits in practice).
fn unquote(raw: &str) -> String {
    let joined = raw.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
