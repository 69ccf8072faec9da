"""Transports: what each ESP is handed and what comes back, against local stubs of the ESPs' real APIs
(Postmark's batch endpoint, Mailgun's one message per call), over real HTTP with kept-alive connections."""

from __future__ import annotations

import socket

import pytest
from django.core import mail
from django.core.mail import EmailMessage

from alerts import esp
from tests.esp_stub import MailgunStub, PostmarkStub, StubServer

POOL = 4


def messages(count: int, start: int = 0) -> list[EmailMessage]:
    return [EmailMessage(f"Alert {i}", f"Question {i} was answered.", "Alerts <alerts@mg.example.org>",
                         [f"reader{i}@example.org"]) for i in range(start, start + count)]


def always() -> bool:
    return True


@pytest.fixture
def mailgun(settings):
    """A Mailgun stub on a port of its own, and settings that send to it over a pool of POOL connections."""
    server = StubServer(MailgunStub(latency=0.01)).start()
    settings.EMAIL_BACKEND = "anymail.backends.mailgun.EmailBackend"
    settings.ANYMAIL = {"MAILGUN_API_KEY": "test", "MAILGUN_API_URL": server.url("/v3"),
                        "MAILGUN_SENDER_DOMAIN": "mg.example.org", "REQUESTS_TIMEOUT": 5}
    settings.DELIVERY_ESP_CONNECTIONS = POOL
    yield server
    server.stop()


@pytest.fixture
def postmark_server(settings):
    server = StubServer(PostmarkStub()).start()
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "test", "POSTMARK_API_URL": server.url("/"), "REQUESTS_TIMEOUT": 5}
    yield server
    server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_every_message_goes_once_through_the_pool_and_each_outcome_is_its_own(mailgun):
    stub = mailgun.stub
    stub.latency = 0.05
    sent = messages(40)

    with esp.open_transport() as transport:
        outcomes = transport.send(sent, always)

    assert transport.name == "mailgun"
    assert sorted(stub.to()) == sorted(m.to[0] for m in sent) and len(stub.messages) == 40
    ids = {m["to"]: m["id"] for m in stub.messages}
    assert [(o.status, o.message_id, o.esp_status, o.outage) for o in outcomes] == [
        (esp.SENT, ids[m.to[0]], "queued", False) for m in sent]
    assert stub.most_at_once == POOL  # the round trips overlap, never more than the pool's size


def test_mailgun_gets_the_whole_email(mailgun):
    from django.core.mail import EmailMultiAlternatives

    message = EmailMultiAlternatives("2 new answers for \u201cpalantir\u201d", "Text: caf\u00e9 & \u00e0 100%\r\n--\n",
                                     "Alerts <alerts@mg.example.org>", ["ada@example.org"],
                                     headers={"List-Unsubscribe": "<https://alerts.example.org/u/t/>",
                                              "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"})
    message.attach_alternative("<p>caf\u00e9 &amp; \u00e0 100%</p>", "text/html")

    with esp.open_transport() as transport:
        [outcome] = transport.send([message], always)

    [got] = mailgun.stub.messages
    assert outcome.status == esp.SENT and outcome.message_id == got["id"]
    assert {key: got[key] for key in ("from", "to", "subject", "text", "html", "h:List-Unsubscribe",
                                      "h:List-Unsubscribe-Post")} == {
        "from": "Alerts <alerts@mg.example.org>", "to": "ada@example.org",
        "subject": "2 new answers for \u201cpalantir\u201d", "text": "Text: caf\u00e9 & \u00e0 100%\r\n--\n",
        "html": "<p>caf\u00e9 &amp; \u00e0 100%</p>", "h:List-Unsubscribe": "<https://alerts.example.org/u/t/>",
        "h:List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def test_the_pool_keeps_its_connections_alive_from_one_chunk_to_the_next(mailgun):
    with esp.open_transport() as transport:
        first = transport.send(messages(20), always)
        connections = len(mailgun.accepted)
        later = transport.send(messages(20, 20), always) + transport.send(messages(20, 40), always)

    assert {o.status for o in first + later} == {esp.SENT} and len(mailgun.stub.messages) == 60
    assert 1 <= connections <= POOL and len(mailgun.accepted) == connections


def test_postmark_sends_a_chunk_in_one_call_on_one_kept_alive_connection(postmark_server):
    stub = postmark_server.stub
    with esp.open_transport() as transport:
        outcomes = [transport.send(messages(100, 100 * n), always) for n in range(3)]

    assert transport.name == "postmark"
    assert [o.status for chunk in outcomes for o in chunk] == [esp.SENT] * 300
    assert stub.to() == [f"reader{i}@example.org" for i in range(300)]
    assert len(postmark_server.accepted) == 1


def _down(server: StubServer, how: str, settings) -> None:
    stub = server.stub
    if how == "refused":
        server.stop()
    elif how == "hangs":
        stub.latency = 1.0
        settings.ANYMAIL = settings.ANYMAIL | {"REQUESTS_TIMEOUT": 0.2}
    elif how == "revoked key":  # 401: every message would be refused alike, until the operator puts it right
        settings.ANYMAIL = settings.ANYMAIL | {"MAILGUN_API_KEY": "revoked"}
    elif how == "unknown domain":  # 404: likewise
        settings.ANYMAIL = settings.ANYMAIL | {"MAILGUN_SENDER_DOMAIN": "mg.example.net"}
    else:
        stub.failures_left, stub.failure_status = 10**6, int(how)


@pytest.mark.parametrize("how", ["503", "500", "429", "refused", "hangs", "revoked key", "unknown domain"])
def test_an_esp_that_fails_as_a_whole_is_not_called_for_the_rest_of_the_chunk(mailgun, settings, how):
    _down(mailgun, how, settings)

    with esp.open_transport() as transport:
        outcomes = transport.send(messages(20), always)

    assert all(o.status == esp.RETRY and o.outage for o in outcomes)
    # Only the calls already under way when the first failure came back were made.
    tried = [o for o in outcomes if not o.error.startswith("not sent")]
    assert 1 <= len(tried) <= POOL and mailgun.stub.calls <= POOL and mailgun.stub.messages == []
    assert all("not sent, the ESP failing: " + tried[0].error.split(":")[0] in o.error
               for o in outcomes if o not in tried)


def test_one_failure_of_the_esp_stops_the_chunk_and_the_pool_recovers_with_it(mailgun, settings):
    settings.DELIVERY_ESP_CONNECTIONS = 1
    stub = mailgun.stub
    stub.failures_left, stub.failure_status = 1, 503

    with esp.open_transport() as transport:
        failed = transport.send(messages(10), always)
        calls = stub.calls
        again = transport.send(messages(10), always)

    # Had the rest of the chunk been sent, the ESP would have taken it.
    assert [(o.status, o.outage) for o in failed] == [(esp.RETRY, True)] * 10 and "503" in failed[0].error
    assert all(o.error.startswith("not sent") for o in failed[1:]) and calls == 1
    assert [o.status for o in again] == [esp.SENT] * 10 and len(stub.messages) == 10


def test_connections_the_esp_cut_are_made_again_when_it_is_back(mailgun):
    with esp.open_transport() as transport:
        assert {o.status for o in transport.send(messages(8), always)} == {esp.SENT}
        mailgun.stop()
        down = transport.send(messages(8, 8), always)
        mailgun.start()
        back = transport.send(messages(8, 16), always)

    assert all(o.outage for o in down) and "ConnectionError" in down[0].error
    assert {o.status for o in back} == {esp.SENT}
    assert sorted(mailgun.stub.to()) == sorted(f"reader{i}@example.org" for i in [*range(8), *range(16, 24)])


def test_an_address_the_esp_refuses_fails_alone(mailgun):
    mailgun.stub.invalid = {"reader3@example.org"}

    with esp.open_transport() as transport:
        outcomes = transport.send(messages(6), always)

    assert [o.status for o in outcomes] == [esp.SENT] * 3 + [esp.REJECTED] + [esp.SENT] * 2
    assert not any(o.outage for o in outcomes) and "not a valid address" in outcomes[3].error
    assert sorted(mailgun.stub.to()) == [f"reader{i}@example.org" for i in (0, 1, 2, 4, 5)]


def test_a_message_the_esp_refuses_for_itself_is_tried_again_later_alone(mailgun):
    real = mailgun.stub.handler

    def refuse_one(request):
        from werkzeug.wrappers import Response

        if request.form.get("to") == "reader2@example.org":
            return Response('{"message": "from parameter is not a valid address"}', status=400)
        return real(request)

    mailgun.stub.handler = refuse_one
    with esp.open_transport() as transport:
        outcomes = transport.send(messages(5), always)

    assert [(o.status, o.outage) for o in outcomes] == [(esp.SENT, False)] * 2 + [(esp.RETRY, False)] + [
        (esp.SENT, False)] * 2


class Lease:
    """A `still_ours` that says yes `times` times, then no."""

    def __init__(self, times: int) -> None:
        self.left = times

    def __call__(self) -> bool:
        self.left -= 1
        return self.left >= 0


def test_once_the_lease_is_lost_the_rest_of_the_chunk_is_left_unsent(mailgun):
    sent = messages(20)
    with esp.open_transport() as transport:
        outcomes = transport.send(sent, Lease(5))

    assert [o.status for o in outcomes] == [esp.SENT] * 5 + [esp.TAKEN] * 15
    assert sorted(mailgun.stub.to()) == sorted(m.to[0] for m in sent[:5])


def test_postmark_sends_nothing_once_the_lease_is_lost(postmark_server):
    with esp.open_transport() as transport:
        outcomes = transport.send(messages(10), Lease(0))

    assert [o.status for o in outcomes] == [esp.TAKEN] * 10 and postmark_server.stub.messages == []


@pytest.mark.parametrize("status", [503, 429])
def test_postmark_failing_as_a_whole_is_not_called_for_the_rest_of_a_long_chunk(postmark_server, status):
    stub = postmark_server.stub
    stub.failures_left, stub.failure_status = 1, status

    with esp.open_transport() as transport:
        outcomes = transport.send(messages(esp.POSTMARK_BATCH_MAX + 100), always)

    # Two batches: had the second been sent, Postmark would have taken it.
    assert all(o.status == esp.RETRY and o.outage for o in outcomes) and stub.messages == []
    assert str(status) in outcomes[0].error and outcomes[-1].error.startswith("not sent")


def test_postmark_refusing_our_account_is_an_outage_not_a_bad_batch(postmark_server):
    calls = []

    def not_allowed(request):
        from werkzeug.wrappers import Response

        calls.append(request.path)
        return Response('{"ErrorCode": 405, "Message": "Not allowed to send: you have run out of credits."}',
                        status=422)

    postmark_server.stub.handler = not_allowed
    with esp.open_transport() as transport:
        outcomes = transport.send(messages(5), always)

    # Not sent one by one, as a batch refused for one bad message would be.
    assert calls == ["/email/batch"] and all(o.status == esp.RETRY and o.outage for o in outcomes)


def test_postmark_refusing_an_address_in_a_batch_holds_back_that_one_only(postmark_server):
    postmark_server.stub.inactive = {"reader1@example.org"}

    with esp.open_transport() as transport:
        outcomes = transport.send(messages(3), always)

    assert [(o.status, o.outage) for o in outcomes] == [(esp.SENT, False), (esp.REJECTED, False), (esp.SENT, False)]


def test_djangos_own_backends_send_one_at_a_time_in_order(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

    with esp.open_transport() as transport:
        outcomes = transport.send(messages(5), Lease(3))

    assert transport.name == "locmem"
    assert [o.status for o in outcomes] == [esp.SENT] * 3 + [esp.TAKEN] * 2
    assert [m.to for m in mail.outbox] == [[f"reader{i}@example.org"] for i in range(3)]


def test_anymails_test_backend_sends_one_at_a_time_in_order():
    # The backend every other test sends through (conftest): what they read in the outbox stays in order.
    with esp.open_transport() as transport:
        outcomes = transport.send(messages(12), always)

    assert transport.name == "test" and [o.status for o in outcomes] == [esp.SENT] * 12
    assert [m.to for m in mail.outbox] == [[f"reader{i}@example.org"] for i in range(12)]


def test_an_smtp_server_that_refuses_the_connection_is_an_outage(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", free_port(), 2

    with esp.open_transport() as transport:
        outcomes = transport.send(messages(4), always)

    assert transport.name == "smtp"
    assert all(o.status == esp.RETRY and o.outage for o in outcomes)
    assert "ConnectionRefusedError" in outcomes[0].error
    assert all(o.error.startswith("not sent, the ESP failing: ConnectionRefusedError") for o in outcomes[1:])
    assert {o.problem for o in outcomes} == {"unreachable"}


def test_what_each_failure_means():
    """The rule, failure by failure: the ESP as a whole, or this message alone, and the class an operator
    sees (the `error` label of wqa_esp_errors_total)."""
    import smtplib
    import ssl

    import requests
    from anymail.exceptions import (
        AnymailAPIError,
        AnymailInvalidAddress,
        AnymailRecipientsRefused,
        AnymailRequestsAPIError,
    )
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    def answered(status: int, body: str = "{}", esp_name: str = "Postmark") -> AnymailRequestsAPIError:
        response = requests.Response()
        response.status_code, response._content = status, body.encode()
        return AnymailRequestsAPIError(response=response, esp_name=esp_name)

    def ses(cause: Exception) -> AnymailAPIError:
        # As Anymail's Amazon SES backend raises it: the client's error as its cause, its answer as the response.
        try:
            raise AnymailAPIError(str(cause), response=getattr(cause, "response", None)) from cause
        except AnymailAPIError as exc:
            return exc

    def ses_answered(status: int, code: str, text: str = "") -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": text or code},
                            "ResponseMetadata": {"HTTPStatusCode": status}}, "SendEmail")

    cases = {
        "no answer": (AnymailRequestsAPIError("Error posting"), esp.RETRY, True, "unreachable"),
        "500": (answered(500), esp.RETRY, True, "server_error"),
        "502": (answered(502), esp.RETRY, True, "server_error"),
        "429": (answered(429), esp.RETRY, True, "rate_limited"),
        "408": (answered(408), esp.RETRY, True, "server_error"),
        "401": (answered(401), esp.RETRY, True, "auth"),
        "403": (answered(403), esp.RETRY, True, "auth"),
        "404": (answered(404), esp.RETRY, True, "auth"),
        "400, the recipient": (answered(400, '{"message": "\'to\' parameter is not a valid address"}'),
                               esp.REJECTED, False, "rejected"),
        "400, the sender": (answered(400, '{"message": "from parameter is not a valid address"}'), esp.RETRY, False,
                            "invalid"),
        "413": (answered(413), esp.FAILED, False, "invalid"),
        "422, Postmark's message": (answered(422, '{"ErrorCode": 300, "Message": "Invalid \'From\'"}'),
                                    esp.RETRY, False, "invalid"),
        "422, Postmark's account": (answered(422, '{"ErrorCode": 405, "Message": "Not allowed to send"}'),
                                    esp.RETRY, True, "auth"),
        "refused recipients": (AnymailRecipientsRefused(), esp.REJECTED, False, "rejected"),
        "connection refused": (ConnectionRefusedError(), esp.RETRY, True, "unreachable"),
        "SES unreachable": (ses(EndpointConnectionError(endpoint_url="https://email.eu-west-2.amazonaws.com")),
                            esp.RETRY, True, "unreachable"),
        "SES throttled": (ses(ses_answered(400, "Throttling")), esp.RETRY, True, "rate_limited"),
        "SES credentials": (ses(ses_answered(403, "InvalidClientTokenId")), esp.RETRY, True, "auth"),
        "SES down": (ses(ses_answered(503, "ServiceUnavailable")), esp.RETRY, True, "server_error"),
        "SES message": (ses(ses_answered(400, "MessageRejected")), esp.RETRY, False, "invalid"),
        "SES sender not verified": (ses(ses_answered(400, "MessageRejected", "Email address is not verified.")),
                                    esp.RETRY, True, "auth"),
        "SES paused": (ses(ses_answered(400, "SendingPausedException")), esp.RETRY, True, "auth"),
        "SES no credentials": (ses(NoCredentialsError()), esp.RETRY, True, "auth"),
        "SES answer unreadable": (ses(ClientError({"Error": {"Code": "X"}}, "SendEmail")), esp.RETRY, False,
                                  "other"),
        "SMTP TLS": (ssl.SSLError(1, "certificate verify failed"), esp.RETRY, True, "unreachable"),
        "SMTP greeting refused": (smtplib.SMTPConnectError(554, b"go away"), esp.RETRY, True, "unreachable"),
        "SMTP login": (smtplib.SMTPAuthenticationError(535, b"bad credentials"), esp.RETRY, True, "auth"),
        "SMTP busy": (smtplib.SMTPResponseException(421, b"try later"), esp.RETRY, True, "server_error"),
        "SMTP recipient": (smtplib.SMTPRecipientsRefused({"a@example.org": (550, b"5.1.1 no such user")}),
                           esp.REJECTED, False, "rejected"),
        "SMTP recipient greylisted": (smtplib.SMTPRecipientsRefused({"a@example.org": (450, b"try later")}),
                                      esp.RETRY, False, "invalid"),
        "SMTP recipient unknown, in relay words": (smtplib.SMTPRecipientsRefused(
            {"a@example.org": (550, b"5.1.1 <a@example.org>: User unknown in relay recipient table")}),
            esp.REJECTED, False, "rejected"),
        "SMTP content refused": (smtplib.SMTPDataError(554, b"5.7.1 looks like spam"), esp.RETRY, False, "invalid"),
        "our sender address unparsable": (AnymailInvalidAddress("Invalid email address 'alerts' in `from_email`"),
                                          esp.RETRY, True, "auth"),
        "a recipient unparsable": (AnymailInvalidAddress("Invalid email address 'x' in `to`"), esp.REJECTED, False,
                                   "rejected"),
        "SMTP relay denied": (smtplib.SMTPRecipientsRefused({"a@example.org": (554, b"5.7.1 Relay access denied")}),
                              esp.RETRY, True, "auth"),
        "SMTP message too big": (smtplib.SMTPSenderRefused(552, b"5.3.4 message size exceeds limit",
                                                           "alerts@example.org"), esp.FAILED, False, "invalid"),
        "SMTP sender later": (smtplib.SMTPSenderRefused(451, b"try later", "alerts@example.org"), esp.RETRY, True,
                              "server_error"),
        "SMTP sender refused": (smtplib.SMTPSenderRefused(550, b"5.7.1 not allowed", "alerts@example.org"),
                                esp.RETRY, True, "auth"),
        "SMTP unparsable": (smtplib.SMTPResponseException(-1, b"?"), esp.RETRY, False, "other"),
        "no route": (OSError(113, "No route to host"), esp.RETRY, True, "unreachable"),
        "another ESP's ErrorCode is not Postmark's": (answered(400, '{"ErrorCode": 401}', "Mailgun"), esp.RETRY,
                                                        False, "invalid"),
        "Postmark's maintenance": (answered(503, '{"ErrorCode": 100}'), esp.RETRY, True, "server_error"),
        "a bug of ours": (ValueError("?"), esp.RETRY, False, "other"),
    }
    outcomes = {name: esp._failure(exc) for name, (exc, *_) in cases.items()}
    assert {name: (o.status, o.outage, o.problem) for name, o in outcomes.items()} == {
        name: tuple(expected) for name, (_, *expected) in cases.items()}
