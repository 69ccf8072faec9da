from django.contrib import admin
from django.urls import include, path

from alerts.metrics import metrics_page
from alerts.overview import overview_page
from alerts.webhooks import tracking_webhook

urlpatterns = [
    path("admin/overview/", overview_page, name="admin-overview"),
    path("admin/", admin.site.urls),
    path("metrics", metrics_page, name="metrics"),
    path("", include("alerts.urls")),
    path("anymail/<slug:esp>/tracking/", tracking_webhook, name="tracking-webhook"),
    path("", include("questions.urls")),
]
