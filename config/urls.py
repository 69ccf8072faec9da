from django.contrib import admin
from django.urls import include, path

from alerts.overview import overview_page

urlpatterns = [
    path("admin/overview/", overview_page, name="admin-overview"),
    path("admin/", admin.site.urls),
    path("", include("alerts.urls")),
    path("anymail/", include("anymail.urls")),
    path("", include("questions.urls")),
]
