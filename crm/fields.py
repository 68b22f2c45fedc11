"""Model and form fields for secrets encrypted at rest (see crm/crypto.py)."""

from __future__ import annotations

from django import forms
from django.db import models

from crm.crypto import Secret, decrypt, encrypt, is_encrypted


class _Keep:
    """Form value meaning "the operator left the secret blank: keep what is stored"."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP = _Keep()


class SecretInput(forms.PasswordInput):
    """Password box that never renders the stored value, only a masked hint of it."""

    template_name = "crm/widgets/secret_input.html"

    def __init__(self, attrs=None):
        super().__init__(attrs={"autocomplete": "new-password", **(attrs or {})}, render_value=False)

    def get_context(self, name, value, attrs):
        hint = value.masked() if isinstance(value, Secret) else ""
        context = super().get_context(name, None, attrs)
        context["widget"]["stored_hint"] = hint
        return context


class SecretFormField(forms.CharField):
    widget = SecretInput

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("strip", True)
        super().__init__(*args, **kwargs)

    def clean(self, value):
        value = super().clean(value)
        return value if value else KEEP

    def has_changed(self, initial, data) -> bool:
        return bool(data)


class EncryptedTextField(models.TextField):
    """Text stored Fernet-encrypted; read back as `Secret`. Only `isnull` lookups make sense on ciphertext."""

    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
        return Secret(decrypt(value)) if value else Secret("")

    def to_python(self, value):
        if value is None or isinstance(value, Secret):
            return value
        value = str(value)
        return Secret(decrypt(value) if is_encrypted(value) else value)

    def get_prep_value(self, value):
        if value is None:
            return None
        plaintext = value.reveal() if isinstance(value, Secret) else str(value)
        if not plaintext:
            return ""
        # A value that is already ciphertext (fixtures, dumpdata) is stored as it is.
        return plaintext if is_encrypted(plaintext) else encrypt(plaintext)

    def value_to_string(self, obj) -> str:
        value = self.value_from_object(obj)
        return "" if value is None else self.get_prep_value(value)

    def get_lookup(self, lookup_name):
        return super().get_lookup(lookup_name) if lookup_name == "isnull" else None

    def save_form_data(self, instance, data) -> None:
        if data is KEEP:
            return
        super().save_form_data(instance, data)

    def formfield(self, **kwargs):
        defaults = {"form_class": SecretFormField, "required": False}
        defaults.update(kwargs)
        defaults.pop("widget", None)  # always SecretInput: never a Textarea that would show the value
        return models.Field.formfield(self, **defaults)
