"""API tokens over the API: ``POST /api/auth/token/`` (name and password in, a new key out, as before)
and ``/api/tokens/`` (a person's own tokens: list, create, rotate, revoke). The key is in the response
that makes it and nowhere else."""

from __future__ import annotations

from django.contrib.auth import authenticate
from django.contrib.auth.signals import user_logged_in
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from tenancy import tokens
from tenancy.models import APIToken
from tenancy.permissions import RolePermission
from tenancy.roles import EVERYONE
from tenancy.signin import lockout_response


class APITokenSerializer(serializers.ModelSerializer):
    class Meta:
        model = APIToken
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "revoked_at", "is_active"]
        read_only_fields = ["prefix", "created_at", "last_used_at", "revoked_at", "is_active"]


class NewAPITokenSerializer(APITokenSerializer):
    token = serializers.CharField(read_only=True, help_text="The key. Shown in this response only: keep it now.")

    class Meta(APITokenSerializer.Meta):
        fields = [*APITokenSerializer.Meta.fields, "token"]


class SignInSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False, write_only=True)


class KeySerializer(serializers.Serializer):
    token = serializers.CharField(read_only=True)


class ObtainTokenView(APIView):
    """Exchange a name and password for a new API token (the key is in this response only). Attempts are
    throttled per account and per address; a locked-out caller gets 429 and no password is checked."""

    authentication_classes = []
    permission_classes = [AllowAny]
    serializer_class = SignInSerializer

    @extend_schema(request=SignInSerializer, responses={200: KeySerializer})
    def post(self, request):
        form = SignInSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        http_request = request._request  # axes reads and flags the request Django's middleware sees
        user = authenticate(
            http_request, username=form.validated_data["username"], password=form.validated_data["password"]
        )
        if user is None:
            if getattr(http_request, "axes_locked_out", False):
                return lockout_response(http_request)
            raise serializers.ValidationError({"non_field_errors": ["Unable to log in with provided credentials."]})
        # As a sign-in through the form: last_login, the audit event, axes' reset of the failure count.
        user_logged_in.send(sender=type(user), request=http_request, user=user)
        _, key = tokens.issue_token(user, actor=user, name="POST /api/auth/token/", via="password")
        return Response({"token": key})


class APITokenViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The caller's own API tokens. ``POST`` makes one (the key is in that response only), ``DELETE``
    revokes one (it stays listed, revoked), ``rotate`` revokes one and makes its successor."""

    serializer_class = APITokenSerializer
    permission_classes = [RolePermission]
    read_roles = write_roles = EVERYONE  # anyone with a role, for their own tokens only (get_queryset)
    queryset = APIToken.objects.none()  # names the model; rows come from get_queryset()

    def get_queryset(self):
        return tokens.tokens_of(self.request.user)

    @extend_schema(request=APITokenSerializer, responses={201: NewAPITokenSerializer})
    def create(self, request):
        form = APITokenSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        token, key = tokens.issue_token(request.user, actor=request.user, name=form.validated_data.get("name", ""))
        return Response(_with_key(token, key), status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None})
    def destroy(self, request, pk=None):
        tokens.revoke_token(self.get_object(), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={201: NewAPITokenSerializer})
    @action(detail=True, methods=["post"])
    def rotate(self, request, pk=None):
        token, key = tokens.rotate_token(self.get_object(), actor=request.user)
        return Response(_with_key(token, key), status=status.HTTP_201_CREATED)


def _with_key(token: APIToken, key: str) -> dict:
    return {**APITokenSerializer(token).data, "token": key}
