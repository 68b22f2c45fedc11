"""Which customer messages opt a contact out of campaigns (docs/campaigns.md "Opt-out").

A message opts out when, ignoring case, accents, punctuation and extra spaces, it is exactly one of
OPT_OUT_KEYWORDS ("STOP", "BAJA", "CANCELAR", "NO MAS" by default): "Baja.", "no más", " STOP! " opt out;
"no me des de baja" does not. The inbound pipeline marks the contact (conversations.services.receive).
"""

from __future__ import annotations

import re
import unicodedata

from django.conf import settings


def normalized(text: str) -> str:
    """Upper case, no accents, letters and digits only, single spaces."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(re.sub(r"[^0-9A-Za-z]+", " ", plain).upper().split())


def is_opt_out(text: str) -> bool:
    """Whether a customer's message is an opt-out keyword."""
    if not text or len(text) > 60:
        return False
    words = normalized(text)
    return bool(words) and words in {normalized(keyword) for keyword in settings.OPT_OUT_KEYWORDS}
