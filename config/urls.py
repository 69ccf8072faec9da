from django.contrib import admin
from django.urls import include, path

from alerts.metrics_page import metrics_page
from alerts.overview import overview_page
from alerts.webhooks import tracking_webhook
from config.observability import VERSION

# Which release is running, on every admin page.
admin.site.site_header = "Written question alerts"
# The release, for staff only: the login page shows the header to anyone.
admin.site.index_title = f"Site administration (release {VERSION})"
admin.site.site_title = "Written question alerts"

urlpatterns = [
    path("admin/overview/", overview_page, name="admin-overview"),
    path("admin/", admin.site.urls),
    path("metrics", metrics_page, name="metrics"),
    path("", include("alerts.urls")),
    path("anymail/<slug:esp>/tracking/", tracking_webhook, name="tracking-webhook"),
    path("", include("questions.urls")),
]
