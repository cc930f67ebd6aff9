"""The Data API's modelled errors.

Each class carries the ``__type`` botocore maps to a modelled exception (``client.exceptions.ValidationException``
and so on) and the HTTP status AWS uses for it. Raise them anywhere below the HTTP layer; ``server.py`` is the one
place that turns them into responses.
"""

from __future__ import annotations


class DataApiError(Exception):
    """Base class: ``code`` is the wire ``__type``, ``status`` the HTTP status."""

    code = "InternalServerException"
    status = 500

    def __init__(self, message: str, **fields: str) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields  # extra modelled members, e.g. ResourceId, StatementId

    def body(self) -> dict[str, str]:
        # botocore reads "message" for Error.Message and the modelled "Message" member for the exception shape.
        return {"__type": self.code, "message": self.message, "Message": self.message, **self.fields}


class ValidationException(DataApiError):
    code = "ValidationException"
    status = 400


class ResourceNotFoundException(DataApiError):
    code = "ResourceNotFoundException"
    status = 400

    def __init__(self, message: str, resource_id: str) -> None:
        super().__init__(message, ResourceId=resource_id)


class ActiveStatementsExceededException(DataApiError):
    code = "ActiveStatementsExceededException"
    status = 400


class ActiveSessionsExceededException(DataApiError):
    code = "ActiveSessionsExceededException"
    status = 400


class DatabaseConnectionException(DataApiError):
    code = "DatabaseConnectionException"
    status = 500


class QueryTimeoutException(DataApiError):
    code = "QueryTimeoutException"
    status = 400


class ThrottlingException(DataApiError):
    """A request over the operation's rate quota (not a modelled shape of the Data API: AWS's common error, which
    botocore's retry modes recognise as throttling)."""

    code = "ThrottlingException"
    status = 400


class InternalServerException(DataApiError):
    code = "InternalServerException"
    status = 500


class UnknownOperationException(DataApiError):
    """What AWS answers for an X-Amz-Target the service does not have."""

    code = "UnknownOperationException"
    status = 400


class SerializationException(DataApiError):
    """What AWS answers for a body that is not a JSON object."""

    code = "SerializationException"
    status = 400
