"""Admin of agents_app."""

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import get_user_model

from agents_app.models import ApiToken
from agents_app.tokens import MAX_DAYS, MIN_DAYS, api_token_create, api_token_revoke, api_token_state

# ------------------------------------------------------------------------------
# API tokens
# ------------------------------------------------------------------------------


class ApiTokenAddForm(forms.ModelForm):
    """Who and for how long: the token itself is generated, never typed in."""

    days = forms.IntegerField(
        min_value=MIN_DAYS,
        max_value=MAX_DAYS,
        initial=lambda: settings.API_TOKEN_DAYS,
        help_text="How many days the token is valid.",
    )

    class Meta:
        model = ApiToken
        fields = ["user", "name"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Create tokens (shown once) and revoke them; every other field is read-only."""

    add_form = ApiTokenAddForm
    add_fields = ["user", "name", "days"]
    # The digest is left out everywhere (list, detail, search): it is all that stands between
    # a database reader and a usable token.
    view_fields = [
        "prefix",
        "name",
        "user",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "status",
    ]
    list_display = view_fields
    list_select_related = ["user"]
    search_fields = ["user__username", "user__email", "name", "prefix"]
    ordering = ["-created_at"]
    actions = ["revoke_selected"]

    @admin.display(description="status")
    def status(self, token: ApiToken) -> str:
        return api_token_state(token=token)

    def get_fields(self, request, obj=None):
        return self.add_fields if obj is None else self.view_fields

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.view_fields

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, change=change, **kwargs)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user":
            users = get_user_model()._default_manager.filter(is_active=True)
            # A token acts as its user: without this, staff allowed to add tokens could mint
            # one for a superuser and act as them through the API.
            if not request.user.is_superuser:
                users = users.filter(pk=request.user.pk)
            kwargs["queryset"] = users
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_change_permission(self, request, obj=None):
        # Tokens are never edited; revoking is the one change, through its action.
        return False

    def has_delete_permission(self, request, obj=None):
        # Revoking keeps the record of who had which token and when it was last used.
        return request.user.is_superuser

    def has_revoke_permission(self, request):
        return request.user.has_perm("agents_app.change_apitoken")

    def save_model(self, request, obj, form, change):
        if change:
            return
        token, plaintext = api_token_create(user=obj.user, name=obj.name, days=form.cleaned_data["days"])
        # The admin logs the addition and redirects with `obj`: make it the row just created.
        obj.pk = token.pk
        obj.refresh_from_db()
        messages.success(
            request,
            f"New API token for {token.user} (expires {token.expires_at:%Y-%m-%d %H:%M} UTC): {plaintext} "
            "- copy it now, it will not be shown again.",
        )

    @admin.action(description="Revoke selected tokens", permissions=["revoke"])
    def revoke_selected(self, request, queryset):
        revoked = 0
        for token in queryset.filter(revoked_at__isnull=True):
            api_token_revoke(token=token)
            revoked += 1
        self.message_user(request, f"Revoked {revoked} token(s).", messages.SUCCESS)
