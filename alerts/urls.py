from django.urls import path

from alerts import views

app_name = "alerts"
urlpatterns = [
    path("alerts/new/", views.signup, name="signup"),
    path("alerts/check-your-inbox/", views.check_inbox, name="check-inbox"),
    path("alerts/link/", views.request_link, name="request-link"),
    path("alerts/follow/<int:pk>/", views.follow, name="follow"),
    path("alerts/confirm/<str:token>/", views.confirm, name="confirm"),
    path("alerts/manage/<str:token>/", views.manage, name="manage"),
    path("alerts/manage/<str:token>/data.json", views.data, name="data"),
    path("alerts/manage/<str:token>/revoke/", views.revoke, name="revoke"),
    path("alerts/manage/<str:token>/add/", views.add, name="add"),
    path("alerts/manage/<str:token>/grouping/", views.grouping, name="grouping"),
    path("alerts/manage/<str:token>/<int:pk>/", views.edit, name="edit"),
    path("alerts/manage/<str:token>/<int:pk>/<str:action>/", views.act, name="act"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
    path("alerts/ways/", views.options, name="options"),
    path("alerts/manage/<str:token>/email/", views.change_email, name="change-email"),
    path("alerts/new-address/<str:token>/", views.confirm_email, name="confirm-email"),
]
