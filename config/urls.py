from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("alerts.urls")),
    path("anymail/", include("anymail.urls")),
    path("", include("questions.urls")),
]
