"""Every word the kiosk shows or speaks, Simplified Chinese first and English second, in one place.

The flow produces keys and placeholders (never sentences); the UI and the speech prompts look the
words up here, so wording changes and translations never touch logic. Placeholders use
`str.format` names ({n}, {room}); a missing placeholder renders as an em dash instead of failing in
front of an expert.
"""

from __future__ import annotations

import string
from enum import StrEnum
from typing import TYPE_CHECKING

from receipt_printer.slip_layout import SLIP_TEXTS

if TYPE_CHECKING:
    from collections.abc import Mapping


class Language(StrEnum):
    """Languages of the kiosk's screens; Chinese is the default for every new expert."""

    ZH = "zh"
    EN = "en"


DEFAULT_LANGUAGE = Language.ZH

# key -> (zh, en). Keys are grouped by screen; error.*, refusal.* and hint.* are used by the flow.
TEXTS: Mapping[str, tuple[str, str]] = {
    # Shared chrome
    "app.title": ("评标专家自助签到", "Expert check-in"),
    "button.cancel": ("取消", "Cancel"),
    "button.home": ("返回首页", "Back to start"),
    "button.retry": ("重试", "Try again"),
    "button.confirm": ("确认", "Confirm"),
    "button.language": ("English", "中文"),
    "button.speech_on": ("语音：开", "Voice: on"),
    "button.speech_off": ("语音：关", "Voice: off"),
    "step.1": ("身份核验", "Identity"),
    "step.2": ("银行卡", "Bank card"),
    "step.3": ("签名", "Signature"),
    "step.4": ("领取手环", "Wristband"),
    "step.5": ("完成", "Done"),
    "step.progress": ("第{step}步，共{total}步", "Step {step} of {total}"),
    "countdown.title": ("您还在吗？", "Are you still there?"),
    "countdown.body": (
        "{seconds}秒后将返回首页并清除您的信息，点击屏幕继续办理",
        "Returning to the start in {seconds} s and clearing your details. Touch the screen to continue",
    ),
    "countdown.continue": ("继续办理", "Continue"),
    # Home
    "home.title": ("评标专家自助签到", "Expert check-in"),
    "home.batch": ("{batch}", "{batch}"),
    "home.date": ("评标时间：{start}", "Evaluation starts: {start}"),
    "home.no_batch": ("暂无进行中的评标批次", "No evaluation is open for check-in"),
    "home.start": ("登记办理", "Check in"),
    "home.help": ("如需帮助请联系现场工作人员", "Staff are nearby if you need help"),
    # Step 1: ID card, face, verifying
    "id_card.title": ("请将身份证放在感应区", "Place your ID card on the reader"),
    "id_card.detail": (
        "身份证放在屏幕下方的读卡区，读取完成前请勿移开",
        "Put it on the reader below the screen and leave it there until it has been read",
    ),
    "id_card.reader_label": ("身份证感应区", "ID card reader"),
    "face.title": ("请正视摄像头", "Please look at the camera"),
    "face.attempt": ("第{n}次，共{max}次", "Try {n} of {max}"),
    "verifying.title": ("正在核验身份，请稍候", "Checking your identity…"),
    "verifying.detail": ("大约需要几秒钟", "This takes a few seconds"),
    "verifying.busy": (
        "办理人数较多，正在排队核验，请稍候",
        "Many people are checking in. Your check is in the queue, please wait",
    ),
    # Face guidance hints (keys from the camera's capture session)
    "hint.no_face": ("请正视摄像头", "Please look at the camera"),
    "hint.several_faces": ("请一位一位办理", "One person at a time, please"),
    "hint.too_far": ("请靠近一些", "Come a little closer"),
    "hint.too_close": ("请稍微后退", "Move back a little"),
    "hint.not_centred": ("请将面部移到框内", "Move your face into the frame"),
    "hint.hold_still": ("请保持不动", "Hold still"),
    "hint.too_dark": ("光线不足", "Too dark"),
    "hint.blink_please": ("请眨眨眼", "Please blink"),
    "hint.turn_left_please": ("请向左转头，再转回来", "Please turn your head to your left, then back"),
    "hint.turn_right_please": ("请向右转头，再转回来", "Please turn your head to your right, then back"),
    "hint.ok": ("很好，请保持", "Good, hold still"),
    # Step 2: bank card
    "card_on_file.title": ("请确认劳务费收款银行卡", "Confirm the card for your evaluation fee"),
    "card_on_file.card": ("{bank} {pan}", "{bank} {pan}"),
    "card_on_file.use": ("确认使用", "Use this card"),
    "card_on_file.replace": ("更换银行卡", "Use another card"),
    "card_insert.title": ("请插入或轻触本人名下的借记卡", "Insert or tap a debit card in your own name"),
    "card_insert.detail": ("用于发放评标劳务费", "Your evaluation fee is paid to this card"),
    "card_insert.swipe": ("刷卡", "Swipe"),
    "card_insert.type": ("手动输入", "Type the number"),
    "card_insert.insert": ("插卡或挥卡", "Insert or tap"),
    "card_swipe.title": ("请在刷卡槽刷卡", "Swipe your card in the slot"),
    "card_swipe.detail": ("磁条朝下，匀速刷过", "Magnetic stripe down, one steady swipe"),
    "card_type.title": ("请输入银行卡号", "Type your card number"),
    "card_type.delete": ("删除", "Delete"),
    "card_type.clear": ("清空", "Clear"),
    "card_confirm.title": ("请核对银行卡号", "Check your card number"),
    "card_confirm.card": ("卡号：{pan}", "Card: {pan}"),
    "card_confirm.reenter": ("重新读卡", "Use another card"),
    "card_source.chip": ("芯片读取", "read from the chip"),
    "card_source.contactless": ("挥卡读取", "read contactless"),
    "card_source.swipe": ("刷卡读取", "read from the stripe"),
    "card_source.typed": ("手动输入", "typed"),
    "card_source.on_file": ("已登记", "on file"),
    # Step 3: signature
    "signature.title": ("请在下方签名，确认以上信息", "Sign below to confirm"),
    "signature.who": ("{name}  身份证 {id}", "{name}  ID {id}"),
    "signature.card": ("劳务费收款卡 {pan}", "Fee to card {pan}"),
    "signature.clear": ("重写", "Clear"),
    "signature.hint": ("在框内用手指签名", "Sign with your finger inside the box"),
    # Step 4: wristband
    "dispensing.title": ("正在为您准备手环，请稍候", "Preparing your wristband…"),
    "dispensing.take": ("请从下方出口取走手环", "Please take your wristband from the slot below"),
    "dispensing.detail": ("请勿将手伸入出口", "Please keep your hands clear of the slot"),
    # Step 5: done, and the honest "room not yet confirmed" ending
    "done.title": ("签到成功", "You are checked in"),
    "done.room": ("您的房间：{hotel} {room}", "Your room: {hotel} {room}"),
    "done.venue": ("评标地点：{venue}  {start}", "Evaluation: {venue}  {start}"),
    "done.take_band": ("请取走手环", "Please take your wristband"),
    "done.returning": ("{seconds}秒后返回首页", "Back to the start in {seconds} s"),
    "done.slip_printing": ("正在打印签到凭证…", "Printing your check-in slip…"),
    "done.slip_printed": ("请取走签到凭证", "Please take your check-in slip"),
    "done.slip_failed": (
        "签到凭证未能打印，请到服务台领取",
        "Your check-in slip could not be printed. Please ask at the desk for it",
    ),
    # The printed check-in slip (签到凭证): its words live with the layout the desk reprints too
    **SLIP_TEXTS,
    "room_pending.title": ("签到已提交，请取走手环", "Check-in sent. Please take your wristband"),
    "room_pending.body": (
        "网络暂时中断，房间号尚未确认。系统将自动补传，请到服务台由工作人员为您确认房间",
        (
            "The network is down for a moment, so your room is not confirmed yet. The kiosk will send your "
            "check-in automatically; please ask at the desk and staff will confirm your room"
        ),
    ),
    # Problems
    "band_problem.title": (
        "手环发放遇到问题，请联系现场工作人员",
        "There was a problem with your wristband. Please ask a member of staff",
    ),
    "band_problem.not_taken": (
        "手环未被取走，已收回。请联系现场工作人员",
        "The wristband was not taken and has been withdrawn. Please ask a member of staff",
    ),
    "out_of_service.title": ("设备维护中，暂停服务", "Temporarily out of service"),
    "out_of_service.body": ("请联系现场工作人员", "Please ask a member of staff"),
    "out_of_service.code": ("代码：{codes}", "Code: {codes}"),
    # Staff mode
    "staff.title": ("工作人员模式", "Staff mode"),
    "staff.pin": ("请输入工作人员密码", "Enter the staff PIN"),
    "staff.pin_locked": ("密码错误次数过多，请{seconds}秒后再试", "Too many wrong PINs. Try again in {seconds} s"),
    "staff.self_test": ("设备自检", "Device check"),
    "staff.refill": ("补充手环", "Refill wristbands"),
    "staff.refill_count": ("本次补充数量", "Bands added"),
    "staff.stock": ("手环库存：{stock}", "Wristbands in stock: {stock}"),
    "staff.pending": ("待补传签到：{pending}", "Check-ins waiting to send: {pending}"),
    "staff.out_of_service_on": ("暂停服务", "Take out of service"),
    "staff.out_of_service_off": ("恢复服务", "Put back in service"),
    "staff.exit": ("退出", "Exit"),
    "staff.queue_waiting": (
        "{since} 手环{band}：等待补传（第{attempts}次）",
        "{since} band {band}: waiting to send (try {attempts})",
    ),
    "staff.queue_refused": (
        "{since} 手环{band}：平台拒绝（{problem}），请按平台工单 {case} 处理",
        "{since} band {band}: refused ({problem}); see {case} on the platform",
    ),
    "staff.queue_clear": ("已处理", "Handled"),
    "staff.test_running": ("正在自检…", "Checking devices…"),
    "staff.device_ok": ("{device}：正常", "{device}: OK"),
    "staff.device_fault": ("{device}：故障 {detail}", "{device}: fault {detail}"),
    "device.id_card_reader": ("身份证读卡器", "ID card reader"),
    "device.bank_card_reader": ("银行卡读卡器", "Bank card reader"),
    "device.band_reader": ("手环读卡器", "Wristband reader"),
    "device.camera": ("摄像头", "Camera"),
    "device.arm": ("机械臂", "Arm"),
    "device.receipt_printer": ("凭证打印机", "Receipt printer"),
    "staff.test_print": ("打印测试", "Test print"),
    "staff.paper_refilled": ("已换纸", "Paper refilled"),
    "staff.test_print_result": ("打印测试：{result}", "test print: {result}"),
    "staff.printer": ("凭证打印机：{state}", "Receipt printer: {state}"),
    "printer.none": ("未配置", "none"),
    "printer.ok": ("正常", "ready"),
    "printer.near_end": ("纸将尽", "paper near end"),
    "printer.out": ("缺纸", "paper out"),
    "printer.printing": ("正在打印…", "printing…"),
    "printer.printed": ("打印成功", "printed"),
    "printer.paper_out": ("缺纸", "paper out"),
    "printer.cover_open": ("纸仓盖打开", "cover open"),
    "printer.offline": ("无应答", "not answering"),
    "printer.failed": ("故障", "fault"),
    "device.platform": ("评标平台", "Platform"),
    # Errors shown on the step they happen on (error keys from the flow)
    "error.id_card_unreadable": ("未能读取身份证，请重新放置", "The ID card could not be read. Please place it again"),
    "error.card_unreadable": (
        "无法读取银行卡，请重新插卡或手动输入",
        "The card could not be read. Insert it again or type the number",
    ),
    "error.card_swipe_unreadable": (
        "无法读取磁条，请重新刷卡或手动输入",
        "The stripe could not be read. Swipe again or type the number",
    ),
    "error.card_number_invalid": ("卡号有误，请核对后重新输入", "That card number is not valid. Please check it"),
    "error.card_reader_unavailable": (
        "读卡器暂不可用，请刷卡或手动输入",
        "The card reader is not available. Swipe or type the number",
    ),
    "error.signature_empty": ("请先签名", "Please sign first"),
    "error.pin_wrong": ("密码错误", "Wrong PIN"),
    "error.refill_count_invalid": ("请输入1到{max}之间的数量", "Enter a number from 1 to {max}"),
    # Refusals (one screen each); codes follow RefusalReason in proto/expertcheckin/v1/common.proto
    "refusal.not_invited": ("您不在本批次邀请专家名单内", "You are not on the invited list for this evaluation"),
    "refusal.face_mismatch": (
        "人脸核验未通过，请摘下帽子或眼镜后重试（第{n}次，共3次）",
        "Your face did not match. Please remove a hat or glasses and try again ({n} of 3)",
    ),
    "refusal.face_attempts_exhausted": (
        "身份核验未通过，请联系现场工作人员",
        "We could not confirm your identity. Please ask a member of staff",
    ),
    "refusal.face_not_usable": (
        "未能拍到清晰的人脸，请正对摄像头后重试",
        "We could not get a clear picture of your face. Please face the camera and try again",
    ),
    "refusal.not_live": ("未检测到真人，请本人正对摄像头", "Please face the camera yourself"),
    "refusal.id_card_expired": (
        "身份证已过有效期，请联系现场工作人员",
        "This ID card has expired. Please ask a member of staff",
    ),
    "refusal.id_card_invalid": (
        "身份证信息无效，请联系现场工作人员",
        "The details on this ID card are not valid. Please ask a member of staff",
    ),
    "refusal.batch_not_open": (
        "本批次签到尚未开始（{start}开始）",
        "Check-in for this evaluation has not started (opens {start})",
    ),
    "refusal.batch_closed": ("本批次签到已结束", "Check-in for this evaluation has closed"),
    "refusal.already_checked_in": (
        "您已于{time}在{kiosk}完成签到，房间{room}",
        "You checked in at {time} at {kiosk}. Your room is {room}",
    ),
    "refusal.no_reference_photo": (
        "请联系现场工作人员完成人工核验",
        "Please ask a member of staff to confirm your identity",
    ),
    "refusal.no_room_left": ("房间已分配完毕，请联系现场工作人员", "All rooms are taken. Please ask a member of staff"),
    "refusal.band_unknown": (
        "手环发放遇到问题，请联系现场工作人员",
        "There was a problem with your wristband. Please ask a member of staff",
    ),
    "refusal.band_not_available": (
        "手环发放遇到问题，请联系现场工作人员",
        "There was a problem with your wristband. Please ask a member of staff",
    ),
    "refusal.bank_card_invalid": ("卡号有误，请核对后重新输入", "That card number is not valid. Please check it"),
    "refusal.signature_invalid": ("签名无法识别，请重新签名", "Your signature could not be read. Please sign again"),
    "refusal.image_too_large": ("照片过大，请重试", "The picture was too large. Please try again"),
    "refusal.image_undecodable": ("照片无法识别，请重试", "The picture could not be read. Please try again"),
    "refusal.identification_expired": ("办理超时，请重新开始", "This took too long. Please start again"),
    "refusal.annul_not_allowed": (
        "操作未完成，请联系现场工作人员",
        "That could not be done. Please ask a member of staff",
    ),
    "refusal.check_in_not_found": (
        "未找到签到记录，请联系现场工作人员",
        "No check-in was found. Please ask a member of staff",
    ),
    "refusal.kiosk_not_registered": (
        "本终端未登记，请联系现场工作人员",
        "This kiosk is not registered. Please ask a member of staff",
    ),
    "refusal.platform_unavailable": (
        "系统连接中断，请稍后重试或联系现场工作人员",
        "We cannot reach the check-in system. Try again shortly or ask a member of staff",
    ),
    "refusal.platform_busy": (
        "办理人数较多，请稍后重试或联系现场工作人员",
        "Many people are checking in right now. Try again in a moment or ask a member of staff",
    ),
    "refusal.device_unavailable": (
        "设备暂时无法使用，请联系现场工作人员",
        "A device is not working. Please ask a member of staff",
    ),
    "refusal.unknown": (
        "暂时无法办理，请联系现场工作人员",
        "We cannot check you in here. Please ask a member of staff",
    ),
}

_MISSING = "—"


class _Defaulting(dict[str, object]):
    """Placeholder values; a placeholder nobody supplied shows as a dash, never as a crash."""

    def __missing__(self, key: str) -> object:
        return _MISSING


def text(key: str, language: Language, /, **params: object) -> str:
    """The words for `key` in `language`, with {placeholders} filled from params."""
    try:
        zh, en = TEXTS[key]
    except KeyError as err:
        raise KeyError(f"no text for key {key!r} in checkin/texts.py") from err
    template = zh if language is Language.ZH else en
    return string.Formatter().vformat(template, (), _Defaulting(params))


def has_text(key: str) -> bool:
    """True when texts.py has words for `key` (used for refusal codes the platform may add)."""
    return key in TEXTS


def placeholders(template: str) -> frozenset[str]:
    """The {names} a template uses, for checking that both languages take the same values."""
    return frozenset(name for _, name, _, _ in string.Formatter().parse(template) if name)
