"""Each ESP's tracking webhook, posted as that ESP posts it (the payload shapes of its documentation, which
Anymail's parser reads), with its own authentication: what stops an address, and what does not."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets

import pytest
from django.utils import timezone

from alerts.models import Subscriber
from tests.conftest import MAILGUN_KEY, SECRET, mailgun_signature, postmark_bounce, sendgrid, use_esp
from tests.factories import subscribe

pytestmark = pytest.mark.django_db(transaction=True)
ADA = "ada@example.org"
MAILERSEND_SECRET = "Fv3wQ8xK2pL7mN4rT9yB6cH1"


def now() -> int:
    return int(timezone.now().timestamp())


def postmark(kind: str) -> dict:
    return {
        "hard": postmark_bounce(),
        "soft": postmark_bounce(Type="SoftBounce", TypeCode=4096, Name="Soft bounce"),
        "transient": postmark_bounce(Type="Transient", TypeCode=2, Name="Message delayed"),
        "complaint": postmark_bounce(RecordType="SpamComplaint", Type="SpamComplaint", TypeCode=512),
        "unsubscribe": {"RecordType": "SubscriptionChange", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
                        "ServerID": 23, "MessageStream": "outbound", "ChangedAt": timezone.now().isoformat(),
                        "Recipient": ADA, "Origin": "Recipient", "SuppressSending": True,
                        "SuppressionReason": "ManualSuppression", "Tag": "", "Metadata": {}},
        "delivered": {"RecordType": "Delivery", "ServerID": 23, "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
                      "Recipient": ADA, "DeliveredAt": timezone.now().isoformat(), "Details": "Test delivery",
                      "MessageStream": "outbound", "Tag": "", "Metadata": {}},
    }[kind]


def sendgrid_events(kind: str) -> list:
    return [{
        "hard": sendgrid("bounce", ADA, reason="550 5.1.1 The email account does not exist", status="5.1.1",
                         type="bounce"),
        "blocked": sendgrid("bounce", ADA, reason="550 5.7.1 blocked by policy", status="5.7.1", type="blocked"),
        "complaint": sendgrid("spamreport", ADA),
        "unsubscribe": sendgrid("unsubscribe", ADA),
        "deferred": sendgrid("deferred", ADA, response="400 try again later", attempt="5"),
        "delivered": sendgrid("delivered", ADA, response="250 OK"),
    }[kind]]


def mailgun(kind: str) -> dict:
    event = {"event": "failed", "severity": "permanent", "reason": "bounce",
             "delivery-status": {"code": 550, "message": "5.1.1 No such user", "description": "", "attempt-no": 1}}
    event |= {"soft": {"severity": "temporary", "reason": "generic"}, "complaint": {"event": "complained"},
              "unsubscribe": {"event": "unsubscribed"}, "delivered": {"event": "delivered"}}.get(kind, {})
    return {"signature": mailgun_signature(), "event-data": event | {
        "timestamp": timezone.now().timestamp(), "id": secrets.token_hex(8), "recipient": ADA,
        "message": {"headers": {"message-id": "20130503182626.18666.16540@example.org", "to": ADA,
                                "from": "alerts@example.org", "subject": "Alert"}}}}


def mailjet(kind: str) -> dict:
    event = {"event": "bounce", "time": now(), "MessageID": 19421777396190490, "email": ADA, "mj_campaign_id": 0,
             "mj_contact_id": 1, "customcampaign": "", "blocked": False, "hard_bounce": True,
             "error_related_to": "recipient", "error": "user unknown"}
    return event | {"soft": {"hard_bounce": False, "error": "quota exceeded"}, "complaint": {"event": "spam"},
                    "unsubscribe": {"event": "unsub"}, "delivered": {"event": "sent"}}.get(kind, {})


def sparkpost(kind: str) -> list:
    event = {"type": "bounce", "bounce_class": "10", "raw_rcpt_to": ADA, "rcpt_to": ADA, "timestamp": str(now()),
             "transmission_id": "65832150921904138", "event_id": secrets.token_hex(8),
             "raw_reason": "550 5.1.1 <ada@example.org>: Recipient address rejected: User unknown"}
    event |= {"soft": {"bounce_class": "22", "raw_reason": "452 4.2.2 Mailbox full"},
              "complaint": {"type": "spam_complaint"}, "delivered": {"type": "delivery"}}.get(kind, {})
    event_class = {"unsubscribe": "unsubscribe_event"}.get(kind, "message_event")
    if kind == "unsubscribe":
        event |= {"type": "list_unsubscribe"}
    return [{"msys": {event_class: event}}]


def brevo(kind: str) -> dict:
    event = {"hard": "hard_bounce", "soft": "soft_bounce", "complaint": "spam", "unsubscribe": "unsubscribe",
             "delivered": "delivered"}[kind]
    return {"event": event, "email": ADA, "id": 894563, "date": "2026-12-07 01:02:03", "ts": now(),
            "message-id": "<201798300811.5787683@relay.domain.com>", "ts_event": now(), "subject": "Alert",
            "tag": "", "sending_ip": "10.10.10.10", "ts_epoch": now() * 1000, "reason": "550 User unknown"}


def amazon_ses(kind: str) -> dict:
    ses = {"mail": {"timestamp": timezone.now().isoformat(), "messageId": "0100016d-b1e7", "destination": [ADA],
                    "source": "alerts@example.org", "headers": []}}
    bounce = {"bounceType": "Permanent", "bounceSubType": "General", "timestamp": timezone.now().isoformat(),
              "bouncedRecipients": [{"emailAddress": ADA, "status": "5.1.1", "diagnosticCode": "smtp; 550 5.1.1"}]}
    ses |= {
        "hard": {"eventType": "Bounce", "bounce": bounce},
        "soft": {"eventType": "Bounce", "bounce": bounce | {"bounceType": "Transient", "bounceSubType": "MailboxFull"}},
        "complaint": {"eventType": "Complaint", "complaint": {"complainedRecipients": [{"emailAddress": ADA}],
                                                              "complaintFeedbackType": "abuse"}},
        "delivered": {"eventType": "Delivery", "delivery": {"recipients": [ADA], "smtpResponse": "250 ok"}},
    }[kind]
    return {"Type": "Notification", "MessageId": "19a5a5e3-b0e9-5e0a-9a3f-8f4bd6ff0a3e",
            "TopicArn": "arn:aws:sns:eu-west-1:123456789012:ses-events", "Message": json.dumps(ses),
            "Timestamp": timezone.now().isoformat(), "SignatureVersion": "1", "Signature": "EXAMPLE",
            "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/cert.pem"}


def mailersend(kind: str) -> dict:
    activity = {"hard": "hard_bounced", "soft": "soft_bounced", "complaint": "spam_complaint",
                "unsubscribe": "unsubscribed", "delivered": "delivered"}[kind]
    morph = {"hard_bounced": {"object": "recipient_bounce", "reason": "Host or domain name not found"},
             "soft_bounced": {"object": "recipient_bounce", "reason": "Mailbox full"},
             "spam_complaint": {"object": "spam_complaint", "reason": None},
             "unsubscribed": {"object": "recipient_unsubscribe", "reason": "NO_LONGER_WANT"}}.get(activity)
    return {"type": f"activity.{activity}", "domain_id": "7z3m5jgrogdpyo6n", "created_at": timezone.now().isoformat(),
            "webhook_id": "7z3m5jgrogdpyo6n", "url": "https://alerts.example.org/anymail/mailersend/tracking/",
            "data": {"object": "activity", "id": secrets.token_hex(12), "type": activity,
                     "created_at": timezone.now().isoformat(), "morph": morph,
                     "email": {"object": "email", "id": "62fb66bf", "status": "rejected", "subject": "Alert",
                               "tags": [], "message": {"object": "message", "id": "62fb66bef54a112e920b5493"},
                               "recipient": {"object": "recipient", "id": "6305f4b1", "email": ADA}}}}


ESPS = {
    # esp: (the settings for its webhook, a payload of each kind, extra headers for the payload's body)
    "postmark": ({"POSTMARK_SERVER_TOKEN": "token"}, postmark, None),
    "sendgrid": ({"SENDGRID_API_KEY": "key"}, sendgrid_events, None),
    "mailgun": ({"MAILGUN_API_KEY": "key", "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY}, mailgun, None),
    "mailjet": ({"MAILJET_API_KEY": "key", "MAILJET_SECRET_KEY": "secret"}, mailjet, None),
    "sparkpost": ({"SPARKPOST_API_KEY": "key"}, sparkpost, None),
    "brevo": ({"BREVO_API_KEY": "key"}, brevo, None),
    "amazon_ses": ({}, amazon_ses, lambda body: {
        "HTTP_X_AMZ_SNS_MESSAGE_TYPE": "Notification",
        "HTTP_X_AMZ_SNS_MESSAGE_ID": "19a5a5e3-b0e9-5e0a-9a3f-8f4bd6ff0a3e"}),
    "mailersend": ({"MAILERSEND_API_TOKEN": "token", "MAILERSEND_SIGNING_SECRET": MAILERSEND_SECRET}, mailersend,
                   lambda body: {"HTTP_SIGNATURE": hmac.new(MAILERSEND_SECRET.encode(), body,
                                                            hashlib.sha256).hexdigest()}),
}
OUTCOMES = {"hard": "bounced", "soft": "", "transient": "", "blocked": "", "complaint": "complained",
            "unsubscribe": "unsubscribed", "deferred": "", "delivered": ""}
# SendGrid's passing bounce is "blocked"; Amazon SES reports no unsubscribes.
CASES = [(esp, kind) for esp in ESPS for kind in ("hard", "soft", "complaint", "unsubscribe", "delivered")
         if (esp, kind) not in {("sendgrid", "soft"), ("amazon_ses", "unsubscribe")}]
CASES += [("postmark", "transient"), ("sendgrid", "blocked"), ("sendgrid", "deferred")]


@pytest.mark.parametrize(("esp", "kind"), CASES)
def test_each_esps_own_events_stop_the_address_or_not(client, settings, esp, kind):
    if esp == "amazon_ses":
        pytest.importorskip("boto3", reason="Anymail's Amazon SES webhook needs boto3")
    anymail, payload, signed = ESPS[esp]
    use_esp(settings, esp, **anymail)
    subscribe(email=ADA)
    body = json.dumps(payload(kind)).encode()
    headers = signed(body) if signed else {}
    token = base64.b64encode(":".join(SECRET).encode()).decode()

    response = client.post(f"/anymail/{esp}/tracking/", data=body, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Basic {token}", **headers)

    assert response.status_code == 200, response.content
    assert Subscriber.objects.get(email=ADA).suppressed_reason == OUTCOMES[kind]
