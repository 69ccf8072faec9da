"""A local stand-in for the Written Questions API, serving records in the real API's shape.

The list endpoint behaves as the real one does: date filters, skip/take paging, texts cut to 255
characters with HTML removed; the detail endpoint returns the whole record.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re

from werkzeug.wrappers import Request, Response

LIST_PATH = "/api/writtenquestions/questions"
DETAIL = re.compile(rf"^{LIST_PATH}/(\d+)$")
DATE_KEYS = {"tabled": "dateTabled", "answered": "dateAnswered", "corrected": "dateAnswerCorrected"}


def preview(text: str | None) -> str | None:
    if not text:
        return text
    plain = re.sub(r"<[^>]+>", "", text)
    return plain if len(plain) <= 255 else plain[:255] + "..."


class ParliamentStub:
    def __init__(self) -> None:
        self.records: dict[int, dict] = {}
        self.requests: list[str] = []
        self.detail_failures: dict[int, int] = {}
        # Called with the id before each detail is answered: lets a test hold the poller mid-way.
        self.on_detail = None

    def put(self, value: dict) -> None:
        self.records[int(value["id"])] = copy.deepcopy(value)

    def update(self, api_id: int, **changes) -> None:
        self.records[api_id].update(changes)

    def _day_matches(self, value: dict, args) -> bool:
        for name, key in DATE_KEYS.items():
            start, end = args.get(f"{name}WhenFrom"), args.get(f"{name}WhenTo")
            if start or end:
                stamp = value.get(key)
                if not stamp:
                    return False
                day = dt.date.fromisoformat(stamp[:10])
                if (start and day < dt.date.fromisoformat(start)) or (end and day > dt.date.fromisoformat(end)):
                    return False
        return True

    def list_page(self, args) -> dict:
        matching = [v for _, v in sorted(self.records.items()) if self._day_matches(v, args)]
        skip, take = int(args.get("skip", 0)), int(args.get("take", 20))
        results = []
        for value in matching[skip:skip + take]:
            item = copy.deepcopy(value)
            item["questionText"] = preview(item.get("questionText"))
            item["answerText"] = preview(item.get("answerText"))
            if args.get("expandMember") != "true":
                item["askingMember"] = item["answeringMember"] = None
            results.append({"value": item, "links": []})
        return {"totalResults": len(matching), "results": results}

    def __call__(self, request: Request) -> Response:
        self.requests.append(request.full_path)
        if request.path == LIST_PATH:
            return Response(json.dumps(self.list_page(request.args)), content_type="application/json")
        found = DETAIL.match(request.path)
        if found and int(found.group(1)) in self.records:
            api_id = int(found.group(1))
            if self.on_detail:
                self.on_detail(api_id)
            if self.detail_failures.get(api_id, 0) > 0:
                self.detail_failures[api_id] -= 1
                return Response("busy", status=500)
            return Response(json.dumps({"value": self.records[api_id], "links": []}), content_type="application/json")
        return Response(json.dumps({"title": "Not Found"}), status=404, content_type="application/json")

    def detail_requests(self) -> int:
        return sum(1 for path in self.requests if DETAIL.match(path.split("?")[0]))


def member(name: str, party: str, constituency: str, member_id: int) -> dict:
    return {"id": member_id, "name": name, "listAs": name, "party": party, "memberFrom": constituency}


def wsgi_app(stub: ParliamentStub):
    """The stub as a WSGI application, for serving it outside pytest (the benches)."""

    def app(environ, start_response):
        return stub(Request(environ))(environ, start_response)

    return app
