"""The chat page: one template with its own CSS and JavaScript, nothing fetched from elsewhere."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.shortcuts import render
from django.templatetags.static import static
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_safe

# A HuggingFace Space shows the app in a frame on huggingface.co; nobody else may frame the page.
FRAME_ANCESTORS = "'self' https://huggingface.co https://*.hf.space"


def content_security_policy(nonce: str) -> str:
    """Only this page's own inline code runs, and it may talk to this origin only."""
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src 'nonce-{nonce}'",
            f"style-src 'nonce-{nonce}'",
            "connect-src 'self'",
            "img-src 'self' data:",
            "base-uri 'none'",
            "form-action 'none'",
            f"frame-ancestors {FRAME_ANCESTORS}",
        )
    )


@xframe_options_exempt  # its CSP's frame-ancestors names who may frame it: the Space
@require_safe
def chat_page(request: HttpRequest) -> HttpResponse:
    nonce = secrets.token_urlsafe(16)
    response = render(
        request,
        "webui/chat.html",
        {
            "nonce": nonce,
            "default_model": settings.LLM_MODEL,
            "max_chars": settings.MESSAGE_MAX_CHARS,
            "version": settings.VERSION,
        },
    )
    response["Content-Security-Policy"] = content_security_policy(nonce)
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    return response


@require_safe
def favicon(request: HttpRequest) -> HttpResponse:
    """/favicon.ico, which browsers ask for on their own: the page's icon (content-hashed, cached)."""
    response = HttpResponsePermanentRedirect(static("webui/favicon.svg"))
    response["Cache-Control"] = "public, max-age=86400"
    return response
