from django.urls import path

from questions import views

urlpatterns = [
    path("", views.search_page, name="search"),
    path("search/", views.search_page),
    path("help/", views.help_page, name="help"),
    path("departments/", views.departments_page, name="departments"),
    path("departments/<str:slug>/", views.department_page, name="department"),
    path("healthz", views.healthz, name="healthz"),
    path("questions/id/<int:pk>/", views.question_by_row, name="question-by-row"),
    path("questions/<str:key>/", views.question_page, name="question"),
    path("feeds/search.rss", views.SearchRSSFeed(), name="search-rss"),
    path("feeds/search.atom", views.SearchAtomFeed(), name="search-atom"),
]
