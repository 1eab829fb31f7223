from protos.attnx.v1 import openrtb_pb2 as _openrtb_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NoticeType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOTICE_TYPE_UNSPECIFIED: _ClassVar[NoticeType]
    NOTICE_TYPE_WIN: _ClassVar[NoticeType]
    NOTICE_TYPE_BILL: _ClassVar[NoticeType]
    NOTICE_TYPE_LOSS: _ClassVar[NoticeType]
    NOTICE_TYPE_ATTENTION: _ClassVar[NoticeType]
NOTICE_TYPE_UNSPECIFIED: NoticeType
NOTICE_TYPE_WIN: NoticeType
NOTICE_TYPE_BILL: NoticeType
NOTICE_TYPE_LOSS: NoticeType
NOTICE_TYPE_ATTENTION: NoticeType

class Notice(_message.Message):
    __slots__ = ("type", "bid_id", "price", "cur", "loss_reason", "attentive_seconds", "sig")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    BID_ID_FIELD_NUMBER: _ClassVar[int]
    PRICE_FIELD_NUMBER: _ClassVar[int]
    CUR_FIELD_NUMBER: _ClassVar[int]
    LOSS_REASON_FIELD_NUMBER: _ClassVar[int]
    ATTENTIVE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SIG_FIELD_NUMBER: _ClassVar[int]
    type: NoticeType
    bid_id: str
    price: float
    cur: str
    loss_reason: int
    attentive_seconds: float
    sig: str
    def __init__(self, type: _Optional[_Union[NoticeType, str]] = ..., bid_id: _Optional[str] = ..., price: _Optional[float] = ..., cur: _Optional[str] = ..., loss_reason: _Optional[int] = ..., attentive_seconds: _Optional[float] = ..., sig: _Optional[str] = ...) -> None: ...

class NoticeAck(_message.Message):
    __slots__ = ("recorded", "bid_id", "state")
    RECORDED_FIELD_NUMBER: _ClassVar[int]
    BID_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    recorded: bool
    bid_id: str
    state: str
    def __init__(self, recorded: _Optional[bool] = ..., bid_id: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...
