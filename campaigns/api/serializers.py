"""Output shapes the campaigns endpoints share (docs/api.md): a campaign's number, template and schedule, and its
recipients by status. Each view's own `OutputSerializer` builds on these."""

from __future__ import annotations

from rest_framework import serializers


class CampaignNumberSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    alias = serializers.CharField()
    engine = serializers.CharField(help_text="cloud (sends templates), web or sandbox (send free text).")


class CampaignRecipientCountsSerializer(serializers.Serializer):
    """Recipients by status, every status present (0 when none)."""

    pending = serializers.IntegerField()
    sending = serializers.IntegerField()
    sent = serializers.IntegerField()
    delivered = serializers.IntegerField()
    read = serializers.IntegerField()
    replied = serializers.IntegerField()
    failed = serializers.IntegerField()
    skipped = serializers.IntegerField()
    unknown = serializers.IntegerField()


class CampaignTemplateSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField(help_text="The template's name at Meta.")
    language = serializers.CharField(help_text="Meta's language code, e.g. es, es_MX.")


class CampaignScheduleSerializer(serializers.Serializer):
    start_at = serializers.DateTimeField(allow_null=True, help_text="Null: as soon as it is started.")
    quiet_from = serializers.TimeField(allow_null=True, help_text="No sends from this time (the number's zone).")
    quiet_until = serializers.TimeField(allow_null=True, help_text="… until this time (may cross midnight).")
    send_days = serializers.ListField(
        child=serializers.IntegerField(), help_text="Days it may send: 1 Monday … 7 Sunday (the number's zone)."
    )
