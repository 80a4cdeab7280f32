//! The signed-in person's own pages: account (two-factor set-up with a
//! QR code drawn here as SVG, recovery codes, profile, password, sessions,
//! trusted devices) and personal API keys.

use super::{back_to, finish, signed_in, Page, PageError};
use crate::http::error::ApiError;
use crate::http::{account, api_keys, mfa, session, Shared};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use minijinja::{context, Value};
use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};

/// The enrolment QR code: black modules on white with a quiet zone, sized
/// by the page's CSS (no fixed pixels), titled for screen readers.
fn qr_svg(text: &str) -> Result<String, ApiError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|e| ApiError::Internal(format!("QR code: {e}")))?;
    let image = code
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    // Strip the XML prolog (inline in HTML) and label the drawing.
    let body = image
        .split_once("<svg")
        .map(|(_, rest)| {
            format!("<svg role=\"img\" aria-label=\"QR code for your authenticator app\"{rest}")
        })
        .unwrap_or_default();
    Ok(body)
}

/// The `secret` parameter of an `otpauth://` URL, for typing by hand.
fn secret_of(provisioning_url: &str) -> Option<String> {
    url::Url::parse(provisioning_url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == "secret")
        .map(|(_, v)| v.into_owned())
}

pub(super) async fn account(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let r: Result<Response, PageError> = async {
        // Before the second factor is verified the sign-in page handles
        // it; an overdue enrolment is done here, so this page takes the
        // session without the enrolment gate.
        let caller = session::require_session(&state, &headers)
            .await
            .map_err(|e| back_to(e, "/account"))?;
        if caller.via_key
            || (caller.user.mfa_enrolled_at.is_some() && caller.session.mfa_verified_at.is_none())
        {
            return Err(PageError::SignIn("/account".into()));
        }
        // The rest of the account waits while an overdue enrolment is due.
        let locked = session::enrollment_deadline(&state.settings, &caller.user)
            .is_some_and(|d| d <= crate::store::Ts::now());
        let status = mfa::status_of(&state, &caller).await?;
        let pending = mfa::pending_provisioning_url(&state, &caller).await?;
        let qr = pending.as_deref().map(qr_svg).transpose()?;
        let secret = pending.as_deref().and_then(secret_of);
        let (sessions, devices) = if locked {
            (Vec::new(), Vec::new())
        } else {
            (
                account::sessions_of(&state, &caller).await?,
                mfa::devices_of(&state, &caller, &headers).await?,
            )
        };
        Ok(Page::signed(&state, "account", &caller).render(
            "account.html",
            context! {
                mfa => Value::from_serialize(&status),
                qr => qr.map(Value::from_safe_string),
                secret,
                locked,
                display_name => caller.user.display_name.clone(),
                sessions => Value::from_serialize(&sessions),
                devices => Value::from_serialize(&devices),
            },
        ))
    }
    .await;
    finish(&state, r)
}

pub(super) async fn api_keys(State(state): State<Shared>, headers: HeaderMap) -> Response {
    let r: Result<Response, PageError> = async {
        let caller = signed_in(&state, &headers, "/api-keys").await?;
        let keys = api_keys::keys_of(&state, caller.user.id).await?;
        // Bindable projects: the ones this person sees.
        let visible = crate::http::projects::visible(&state, &caller).await?;
        let projects: Vec<Value> = visible
            .iter()
            .map(|p| Value::from_serialize(serde_json::json!({"id": p.id, "slug": p.slug})))
            .collect();
        let scopes: Vec<&str> = api_keys::SCOPES
            .iter()
            .copied()
            .filter(|s| caller.user.is_admin || !api_keys::ADMIN_ONLY.contains(s))
            .collect();
        Ok(Page::signed(&state, "api_keys", &caller).render(
            "api_keys.html",
            context! { keys => Value::from_serialize(&keys), projects, scopes },
        ))
    }
    .await;
    finish(&state, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_qr_code_is_inline_svg_with_a_label() {
        let url = "otpauth://totp/z4j%20(z4j):a%40example.com?secret=JBSWY3DPEHPK3PXP&issuer=z4j%20(z4j)&algorithm=SHA1&digits=6&period=30";
        let svg = qr_svg(url).unwrap_or_default();
        assert!(
            svg.starts_with("<svg role=\"img\" aria-label="),
            "{svg:.80}"
        );
        assert!(svg.contains("<path") && svg.ends_with("</svg>"));
        assert!(!svg.contains("<?xml"), "no prolog inside HTML");
        assert_eq!(secret_of(url).as_deref(), Some("JBSWY3DPEHPK3PXP"));
    }
}
